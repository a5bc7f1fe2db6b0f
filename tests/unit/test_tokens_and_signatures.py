import time

import jwt
import pytest

from voxbus_common.tokens import AUDIENCE, InvalidToken, MediaTokens, new_key_spec, parse_keys
from voxbus_gateway.edges.twilio_auth import twilio_signature, valid_twilio_signature

KEY_A = "a:" + "x" * 32
KEY_B = "b:" + "y" * 32


def test_twilio_documented_test_vector() -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(url, params, "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert valid_twilio_signature(url, params, "12345", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not valid_twilio_signature(url, params, "12346", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not valid_twilio_signature(url, params, "12345", "")


def test_issue_and_verify_with_call_binding() -> None:
    tokens = MediaTokens(KEY_A)
    token = tokens.issue(call_id="c1", ttl_s=60)
    claims = tokens.verify(token, "c1")
    assert claims.call_id == "c1" and claims.expires_at > time.time()
    with pytest.raises(InvalidToken, match="another call"):
        tokens.verify(token, "c2")


def test_rotation_old_key_still_verifies_until_retired() -> None:
    old = MediaTokens(KEY_A).issue()
    rolled = MediaTokens(f"{KEY_B},{KEY_A}")  # new key signs, old still verifies
    assert rolled.verify(old).subject == "caller"
    assert rolled.verify(rolled.issue()).subject == "caller"
    with pytest.raises(InvalidToken, match="unknown or retired"):
        MediaTokens(KEY_B).verify(old)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidToken):
        MediaTokens(KEY_A).verify(token)


def test_expired_and_wrong_audience() -> None:
    secret = "x" * 32
    expired = jwt.encode({"aud": AUDIENCE, "exp": int(time.time()) - 5}, secret,
                         algorithm="HS256", headers={"kid": "a"})
    with pytest.raises(InvalidToken, match="expired"):
        MediaTokens(KEY_A).verify(expired)
    other = jwt.encode({"aud": "someone-else", "exp": int(time.time()) + 60}, secret,
                       algorithm="HS256", headers={"kid": "a"})
    with pytest.raises(InvalidToken, match="invalid token"):
        MediaTokens(KEY_A).verify(other)


def test_key_spec_validation() -> None:
    assert "dev" in parse_keys(new_key_spec())
    with pytest.raises(ValueError):
        parse_keys("nokey")
    with pytest.raises(ValueError):
        parse_keys("k:short")
