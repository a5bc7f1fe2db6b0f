"""Control API credentials: closed by default (also on loopback), scopes, the explicit
loopback opt-out for local development."""

from __future__ import annotations

import time

import jwt

from voxbus_gateway.control.auth import AUDIENCE, ControlAuth

LOOPBACK, REMOTE = "ipv4:127.0.0.1:40000", "ipv4:10.1.2.3:40000"
SECRET = "control-secret-" + "x" * 24


def bearer(token: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {token}")]


def signed(**claims: object) -> str:
    return jwt.encode({"aud": AUDIENCE, "exp": int(time.time()) + 60, **claims}, SECRET)


def test_nothing_configured_refuses_everyone_also_on_loopback() -> None:
    auth = ControlAuth("", "")
    assert "no control tokens are configured" in auth.check(None, LOOPBACK)
    assert auth.check(bearer("guess"), LOOPBACK) == "invalid token"


def test_operator_tokens_steer_calls_but_cannot_mint_media_tokens() -> None:
    auth = ControlAuth("op", "", admin_tokens="boss")
    assert auth.check(bearer("op"), REMOTE) == ""
    assert auth.check(bearer("op"), REMOTE, admin=True) == "this call needs an admin token"
    assert auth.check(bearer("boss"), REMOTE, admin=True) == ""
    assert auth.check(None, LOOPBACK).startswith("missing")


def test_jwt_scope_admin() -> None:
    auth = ControlAuth("", SECRET)
    assert auth.check(bearer(signed()), REMOTE) == ""
    assert auth.check(bearer(signed()), REMOTE, admin=True) == "this call needs the admin scope"
    assert auth.check(bearer(signed(scope="calls admin")), REMOTE, admin=True) == ""


def test_loopback_opt_out_serves_loopback_without_admin() -> None:
    auth = ControlAuth("", "", allow_loopback=True)
    assert auth.check(None, LOOPBACK) == ""
    assert auth.check(None, LOOPBACK, admin=True) == "this call needs an admin token"
    assert auth.check(None, REMOTE) != ""


def test_oversized_or_non_ascii_tokens_are_invalid() -> None:
    auth = ControlAuth("tok", "")
    assert auth.check(bearer("t" * 10_000), REMOTE) == "invalid token"
    assert auth.check(bearer("tök"), REMOTE) == "invalid token"
