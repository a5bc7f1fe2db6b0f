"""PII redaction: what is replaced, what is left alone, and how the policy is configured."""

import pytest

from voxbus_common.redact import Redactor, luhn_valid

R = Redactor()


@pytest.mark.parametrize("said, stored", [
    ("my card is 4111 1111 1111 1111 thanks", "my card is [card] thanks"),
    ("card 4111-1111-1111-1111", "card [card]"),
    ("it's 5500005555555559", "it's [card]"),
    ("social is 123-45-6789", "social is [ssn]"),
    ("social is 123 45 6789", "social is [ssn]"),
    ("write to jane.doe+vb@example.co.uk please", "write to [email] please"),
    ("call me at (415) 555-0132", "call me at [phone]"),
    ("call me at 415-555-0132 tonight", "call me at [phone] tonight"),
    ("my number is +44 20 7946 0958", "my number is [phone]"),
    # what Whisper writes for a spoken card (issue 15)
    ("My card number is 4,111,111,111,111,111.", "My card number is [card]."),
    ("my card is 4111 1111, 1111 1111.", "my card is [card]."),
    ("four one one one, one one one one, one one one one, one one one one", "[card]"),
    ("forty-one eleven, eleven eleven, eleven eleven, eleven eleven", "[card]"),
    ("press 1, 4111-1111-1111-1111 please", "press 1, [card] please"),
    ("card 4111 1111 1111 1111 12 25", "card [card] 12 25"),  # the expiry date is no card
    # a digit count garbled by the recogniser fails Luhn: redacted all the same
    ("my card is 4,111,111,111,111,111,111,111, thanks", "my card is [card], thanks"),
    ("order 4111 1111 1111 1112 is not a card", "order [number] is not a card"),
    ("My card number is for quadrillion, 532 trillion, 15,112,830,366. Thanks.",
     "My card number is for quadrillion, [number]. Thanks."),
    ("social one two three, four five, six seven eight nine", "social [ssn]"),
    ("call four one five, five five five, oh one three two", "call [phone]"),
    ("call 4,155,550,132 tonight", "call [phone] tonight"),
])
def test_replaced(said: str, stored: str) -> None:
    assert R(said) == stored


@pytest.mark.parametrize("said", [
    "a table for 4 at 7 pm on the 12th",
    "the year 1961 and room 101",
    "that is $1,250.00 for a table for 2 at 7:30pm in 2026",
    "1,000,000 people, 12 kids",
    "I have 2 kids and 3 dogs",
])
def test_left_alone(said: str) -> None:
    assert R(said) == said


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_policy_from_setting() -> None:
    assert Redactor.from_setting("email")("a@b.io 415-555-0132") == "[email] 415-555-0132"
    assert Redactor.from_setting("none")("a@b.io") == "a@b.io"
    assert Redactor.from_setting("all").kinds == ("card", "ssn", "email", "phone")
    with pytest.raises(ValueError, match=r"unknown redaction kind.*passport"):
        Redactor.from_setting("email,passport")


def test_log_lines_are_redacted_but_ids_are_not() -> None:
    import logging

    from voxbus_common.logs import _RedactingFilter

    record = logging.LogRecord("x", logging.INFO, "f", 1, "caller said %s", ("a@b.io",), None)
    record.call_id = "call-4155550132"
    record.note = "ring 415-555-0132"
    assert _RedactingFilter(R).filter(record)
    assert record.getMessage() == "caller said [email]"
    assert getattr(record, "note") == "ring [phone]"  # noqa: B009
    assert getattr(record, "call_id") == "call-4155550132"  # noqa: B009


def test_memory_stores_redacted_turns() -> None:
    from voxbus.v1.call_pb2 import CallEvent
    from voxbus.v1.memory_pb2 import Session
    from voxbus.v1.meta_pb2 import Meta
    from voxbus_memory.recorder import apply_event

    session = Session()
    event = CallEvent(meta=Meta(call_id="c1", turn_id=1),
                      user_turn=CallEvent.UserTurn(text="ssn 123-45-6789"))
    assert apply_event(session, event, R)
    assert session.turns[0].text == "ssn [ssn]"
