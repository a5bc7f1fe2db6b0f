"""What callers and operators hand the control plane: call ids, media tokens, control
credentials (gRPC metadata), and the text that redaction cleans before anything is stored."""

from __future__ import annotations

import base64
import json
import re
import string
import time
from typing import Any

import jwt
from hypothesis import example, given, reject
from hypothesis import strategies as st

from tests.fuzz.budget import examples
from tests.fuzz.strategies import json_values
from voxbus_common.ids import CALL_ID_PATTERN, InvalidCallId, new_call_id, validate_call_id
from voxbus_common.redact import KINDS, Redactor, luhn_valid
from voxbus_common.tokens import AUDIENCE, InvalidToken, MediaClaims, MediaTokens, parse_keys
from voxbus_gateway.control.auth import AUDIENCE as CONTROL_AUDIENCE
from voxbus_gateway.control.auth import ControlAuth

call_ids = st.from_regex(CALL_ID_PATTERN, fullmatch=True)
any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates included

# -- call ids -----------------------------------------------------------------------------------


@examples(800)
@given(st.one_of(any_text, call_ids, st.none(), st.integers(), st.binary(max_size=8)))
def test_validate_call_id(value: Any) -> None:
    try:
        assert validate_call_id(value) == value
    except InvalidCallId as exc:
        assert "invalid call id" in str(exc)
        assert not (isinstance(value, str) and CALL_ID_PATTERN.fullmatch(value))
        return
    assert isinstance(value, str) and "." not in value and 1 <= len(value) <= 64


def test_new_call_ids_are_valid() -> None:
    for _ in range(200):
        validate_call_id(new_call_id())


# -- media tokens -------------------------------------------------------------------------------

KEY = "k1:" + "s" * 32
OLD = "k0:" + "o" * 32
TOKENS = MediaTokens(f"{KEY},{OLD}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


claims = st.dictionaries(
    st.sampled_from(["sub", "aud", "exp", "iat", "nbf", "call", "jti", "iss"])
    | st.text(max_size=5),
    st.sampled_from([AUDIENCE, int(time.time()) + 3600, int(time.time()) - 3600, "c1",
                     float("inf"), float("nan"), 10**30, [AUDIENCE]]) | json_values(max_leaves=4),
    max_size=7)
headers = st.dictionaries(st.sampled_from(["kid", "alg", "typ", "crit"]) | st.text(max_size=4),
                          st.sampled_from(["k1", "k0", "k9", "HS256", "none", "RS256"])
                          | json_values(max_leaves=3), max_size=4)


@st.composite
def forged(draw: st.DrawFn) -> str:
    """Token-shaped strings: JSON header and payload, any signature."""
    header = json.dumps(draw(headers)).encode()
    body = json.dumps(draw(claims)).encode()
    sig = draw(st.binary(max_size=40))
    parts = [b64url(header), b64url(body), b64url(sig)]
    return ".".join(parts[: draw(st.integers(1, 4))])


@st.composite
def signed(draw: st.DrawFn) -> str:
    """Tokens signed with a configured (or unknown) key: only the claims decide."""
    kid, secret = draw(st.sampled_from([KEY, OLD, "k9:" + "x" * 32])).split(":", 1)
    head = {k: v for k, v in draw(headers).items() if k != "alg"}
    head["kid"] = draw(st.sampled_from([kid, kid, "k1"]) | json_values(max_leaves=2))
    return sign(draw(claims), secret, head)


def sign(payload: dict[str, Any], secret: str, head: dict[str, Any] | None = None) -> str:
    try:
        return jwt.encode(payload, secret, algorithm="HS256", headers=head)
    except (jwt.PyJWTError, TypeError, ValueError):  # PyJWT's own checks of what it signs
        reject()


def _verified(token: str, call_id: str) -> MediaClaims | None:
    try:
        got = TOKENS.verify(token, call_id)
    except InvalidToken as exc:
        assert str(exc) and "s" * 16 not in str(exc)  # the reason, never the secret
        return None
    assert isinstance(got.subject, str) and isinstance(got.call_id, str)
    assert isinstance(got.expires_at, int) and got.expires_at > time.time() - 5
    if call_id and got.call_id:
        assert got.call_id == call_id
    return got


@examples(500)
@given(st.one_of(any_text, forged(), signed()), st.sampled_from(["", "c1", "c2"]))
@example("\udcff.e30.e30", "")  # aiohttp's decoding of a non-UTF-8 header; was UnicodeEncodeError
def test_verify_any_token(token: str, call_id: str) -> None:
    _verified(token, call_id)


@examples(100)
@given(st.text(max_size=40), st.sampled_from(["", "c1"]) | call_ids, st.integers(5, 10**6))
def test_issued_tokens_verify(subject: str, call_id: str, ttl: int) -> None:
    got = _verified(TOKENS.issue(subject, call_id, ttl), call_id)
    assert got is not None and (got.subject, got.call_id) == (subject, call_id)


@examples(400)
@given(st.text() | st.lists(st.tuples(st.text(max_size=4), st.just(":"), st.text(max_size=20))
                            .map("".join), max_size=3).map(",".join))
def test_parse_keys(spec: str) -> None:
    try:
        keys = parse_keys(spec)
    except ValueError as exc:
        assert "kid:secret" in str(exc)
        return
    assert all(kid and len(secret) >= 16 for kid, secret in keys.items())


# -- control API credentials --------------------------------------------------------------------

SECRET = "control-secret-" + "z" * 24
AUTHS = [ControlAuth("tok-a,tok-b", ""), ControlAuth("", SECRET), ControlAuth("tok-a", SECRET),
         ControlAuth("", "")]


@st.composite
def bearer(draw: st.DrawFn) -> str:
    token = draw(st.one_of(
        any_text, st.sampled_from(["tok-a", "tok-b", "tok-", "tok-aa", "ök-a"]), signed(),
        st.builds(lambda c: sign(c, SECRET), claims),
        st.just(jwt.encode({"aud": CONTROL_AUDIENCE, "exp": int(time.time()) + 3600}, SECRET,
                           algorithm="HS256"))))
    return draw(st.sampled_from(["Bearer ", "bearer  ", "BEARER ", "Basic ", ""])) + token


metadata = st.lists(st.tuples(st.sampled_from(["authorization", "Authorization", "x-bin"])
                              | st.text(max_size=6), bearer() | st.binary(max_size=20)),
                    max_size=3) | st.none()
peers = st.sampled_from(["ipv4:127.0.0.1:5000", "ipv6:[::1]:1", "unix:/tmp/s",
                         "ipv4:10.0.0.1:3", ""]) | any_text


@examples(500)
@given(st.sampled_from(range(len(AUTHS))), metadata, peers)
@example(0, [("authorization", "Bearer ök-a")], "")  # TypeError before the fix
@example(1, [("authorization", "Bearer \udcff")], "")
def test_control_auth_check(which: int, meta: list[tuple[str, str | bytes]] | None,
                            peer: str) -> None:
    why = AUTHS[which].check(meta, peer)
    assert isinstance(why, str)
    if not why and AUTHS[which].enabled:  # allowed: a real credential was presented
        header = next(str(v) for k, v in meta or () if k == "authorization")
        assert header.lower().startswith("bearer ")


# -- redaction ----------------------------------------------------------------------------------

REDACTORS = [Redactor(), Redactor(("card",)), Redactor(("phone", "email")), Redactor(())]
pii_text = st.lists(st.one_of(
    st.text(max_size=12), st.sampled_from([" ", "-", ".", "@", "+", "(", ")", "\n"]),
    st.text(string.digits, min_size=1, max_size=19),
    st.sampled_from(["4111 1111 1111 1111", "123-45-6789", "a.b+c@example.co.uk",
                     "(415) 555-0132", "+44 20 7946 0958", "5500005555555559"])),
    max_size=10).map("".join)


@examples(600)
@given(st.sampled_from(range(len(REDACTORS))), pii_text | any_text)
def test_redaction_is_idempotent(which: int, text: str) -> None:
    redact = REDACTORS[which]
    once = redact(text)
    assert isinstance(once, str)
    assert redact(once) == once


@st.composite
def cards(draw: st.DrawFn) -> str:
    """A Luhn-valid 16-digit card number, written as a caller's recognizer might."""
    body = [draw(st.integers(0, 9)) for _ in range(15)]
    digits = "".join(map(str, body))
    check = next(d for d in range(10) if luhn_valid(f"{digits}{d}"))
    number = f"{digits}{check}"
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    return sep.join(number[i:i + 4] for i in range(0, 16, 4))


@examples(600)
@given(pii_text, cards(), pii_text)
def test_no_card_survives_redaction(before: str, card: str, after: str) -> None:
    """Wherever a card number sits in a transcript (short of touching other digits, which
    makes it another, longer number, or letters, which make it an identifier such as
    "c4111..."), the stored text no longer holds it."""
    before = re.sub(r"[\w\-]$", lambda m: m.group(0) + " x ", before)
    after = re.sub(r"^[\w\-]", lambda m: " x " + m.group(0), after)
    out = Redactor(KINDS)(before + card + after)
    digits = re.sub(r"\D", "", card)
    assert card not in out and digits not in re.sub(r"[ .\-]", "", out)
