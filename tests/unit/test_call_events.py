"""What the gateway publishes about a call: turn texts redacted before they reach the stored
event stream, the caller's identity on Started, and transfers recorded before the leg ends."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.message import Message
from nats.aio.msg import Msg

from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.meta_pb2 import Meta
from voxbus_common import registry, subjects
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.metrics import ERRORS
from voxbus_common.registry import subject_matches
from voxbus_gateway.call import Call


class RecordingBus:
    """Bus double: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Message]] = []

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id)

    async def publish_acked(self, subject: str, msg: Message, msg_id: str = "",
                            retry_s: float = 0.0, direct: bool = False) -> None:
        self.published.append((subject, msg))


class Edge:
    name = "pcm-ws"
    supports_marks = False
    caller = "+1 (555) 010-0199"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.transferred: list[str] = []

    async def send_audio(self, pcm16: bytes) -> None: ...
    async def send_mark(self, name: str) -> None: ...
    async def clear(self) -> None: ...

    async def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def transfer(self, target: str) -> bool:
        self.transferred.append(target)
        return True


def make_call(redact: str = "card,ssn,email,phone") -> tuple[Call, RecordingBus, Edge]:
    bus, edge = RecordingBus(), Edge()
    settings = Settings().model_copy(update={"redact_pii": redact})
    return Call(cast(Bus, bus), settings, "c1", edge, "gw"), bus, edge


def events(bus: RecordingBus) -> list[CallEvent]:
    return [cast(CallEvent, msg) for _, msg in bus.published]


async def test_turn_texts_are_redacted_before_publishing() -> None:
    call, bus, _ = make_call()
    await call.control(1, user_turn=CallEvent.UserTurn(text="card 4111 1111 1111 1111 please"))
    await call.control(1, agent_turn=CallEvent.AgentTurn(
        heard_text="I will mail jane@example.com", full_text="Call 415-555-0132 or mail "
                                                            "jane@example.com"))
    await call.outbox.flush()
    user, agent = events(bus)
    assert user.user_turn.text == "card [card] please"
    assert agent.agent_turn.heard_text == "I will mail [email]"
    assert agent.agent_turn.full_text == "Call [phone] or mail [email]"


async def test_redaction_off_keeps_the_text() -> None:
    call, bus, _ = make_call("none")
    await call.control(1, user_turn=CallEvent.UserTurn(text="jane@example.com"))
    await call.outbox.flush()
    assert events(bus)[0].user_turn.text == "jane@example.com"


async def test_transfer_is_recorded_offered_to_the_edge_and_ends_the_leg() -> None:
    call, bus, edge = make_call()
    assert call.caller == "+1 (555) 010-0199"
    await call.transfer(3, "+15550100100")
    await call.outbox.flush()
    event = events(bus)[0]
    assert (event.meta.turn_id, event.transfer.target) == (3, "+15550100100")
    assert edge.events == [{"type": "transfer", "target": "+15550100100"}]
    assert edge.transferred == ["+15550100100"]
    assert call.hangup_requested.result() == "transferred to +15550100100"


async def test_an_acknowledgement_while_the_agent_talks_is_never_a_turn() -> None:
    """Also when its onset was already resumed (the STT confirmed the speech late), the
    final "okay" must not cut the agent off; real words do."""
    from voxbus.v1.speech_pb2 import Transcript

    call, _, edge = make_call()
    call.settings = call.settings.model_copy(update={"greeting": "Hello, how can I help?"})
    call.conversation.settings = call.settings
    await call.conversation.greet()
    greeting = call.conversation.turn
    assert greeting is not None
    await call.conversation.on_transcript(Transcript(final=True, text="Okay.", utterance_id=1))
    assert call.conversation.turn is greeting
    assert edge.events[-1] == {"type": "turn_skipped", "utterance": 1,
                               "reason": "backchannel", "text": "Okay."}
    await call.conversation.on_transcript(Transcript(final=True, text="What are your hours?",
                                                     utterance_id=2))
    assert call.conversation.turn is not greeting  # a real question takes the turn
    await call.conversation.stop()


async def test_the_call_handles_every_row_addressed_to_its_gateway() -> None:
    """The call's one subscription (`vb.call.ID.out.>`) is decoded by registry row: a row
    added under it without a handler fails here, not in a live call."""
    call, _, _ = make_call()
    under = [row.name for row in registry.ROWS
             if subject_matches(registry.CALL_OUT_ALL.replace(registry.CALL, "*"), row.wildcard)]
    assert sorted(row.name for row in call.inbox.rows) == sorted(under)
    assert all("gateway" in row.consumers for row in call.inbox.rows)


async def test_a_bad_or_unknown_message_on_the_call_is_counted_not_raised() -> None:
    call, _, _ = make_call()
    bad = ERRORS.labels("gateway", "bad_bus_message")
    before = bad._value.get()
    await call.on_bus(Msg(None, subject=subjects.transcript("c1"),  # type: ignore[arg-type]
                          data=b"\xff\xff not protobuf"))
    await call.on_bus(Msg(None, subject="vb.call.c1.out.unheard-of",  # type: ignore[arg-type]
                          data=b""))
    assert bad._value.get() == before + 2
