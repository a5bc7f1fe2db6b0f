"""Who may steer calls: a bearer token on every control RPC, also from loopback.

Static tokens (VOXBUS_CONTROL_TOKENS, operator scope; VOXBUS_CONTROL_ADMIN_TOKENS, admin
scope) for services and scripts, or HS256 JWTs (VOXBUS_CONTROL_JWT_SECRET, audience
"voxbus-control", `scope` "admin" for the admin scope) for short-lived operator sessions.
Minting media tokens needs the admin scope: a media token's subject is the key to a caller's
long-term memory.

Closed by default: with no token configured every request is refused. Local development may
opt out explicitly (VOXBUS_CONTROL_ALLOW_LOOPBACK=true): loopback peers are then served with
the operator scope, never the admin one.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

import grpc
import jwt

AUDIENCE = "voxbus-control"
ADMIN_SCOPE = "admin"
LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "unix:")


def _tokens(spec: str) -> list[str]:
    return [t.strip() for t in spec.split(",") if t.strip()]


class ControlAuth:
    def __init__(self, tokens: str, jwt_secret: str, admin_tokens: str = "",
                 allow_loopback: bool = False) -> None:
        self.tokens = _tokens(tokens)
        self.admin_tokens = _tokens(admin_tokens)
        self.jwt_secret = jwt_secret
        self.allow_loopback = allow_loopback

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.admin_tokens or self.jwt_secret)

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None, peer: str,
              admin: bool = False) -> str:
        """"" when allowed, else why not (for UNAUTHENTICATED / PERMISSION_DENIED)."""
        header = next((str(v) for k, v in metadata or () if k == "authorization"), "")
        if not header:
            if self.allow_loopback and peer.startswith(LOOPBACK_PEERS):
                return "this call needs an admin token" if admin else ""
            if not self.enabled:
                return ("no control tokens are configured (VOXBUS_CONTROL_TOKENS, "
                        "VOXBUS_CONTROL_ADMIN_TOKENS or VOXBUS_CONTROL_JWT_SECRET)")
            return "missing 'authorization: Bearer <token>' metadata"
        if not header.lower().startswith("bearer "):
            return "missing 'authorization: Bearer <token>' metadata"
        token = header[7:].strip()
        if not token.isascii() or len(token) > 4096:  # compare_digest raises TypeError on
            return "invalid token"  # non-ASCII str, and a JWT is ASCII anyway (fuzzing)
        if any(hmac.compare_digest(token, known) for known in self.admin_tokens):
            return ""
        if any(hmac.compare_digest(token, known) for known in self.tokens):
            return "this call needs an admin token" if admin else ""
        if self.jwt_secret:
            try:
                claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"],
                                    audience=AUDIENCE, options={"require": ["exp", "aud"]})
            except jwt.InvalidTokenError as exc:
                return f"invalid token: {exc}"
            scopes = str(claims.get("scope", "")).split()
            return "this call needs the admin scope" if admin and ADMIN_SCOPE not in scopes \
                else ""
        return "invalid token"

    async def require(self, context: grpc.aio.ServicerContext[Any, Any],
                      admin: bool = False) -> None:
        why = self.check(context.invocation_metadata(), context.peer(), admin)
        if why:
            code = (grpc.StatusCode.PERMISSION_DENIED if why.startswith("this call needs")
                    else grpc.StatusCode.UNAUTHENTICATED)
            await context.abort(code, why)
