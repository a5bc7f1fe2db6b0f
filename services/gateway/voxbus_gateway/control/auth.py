"""Who may steer calls: a bearer token on every control RPC.

Static tokens (VOXBUS_CONTROL_TOKENS) for services and scripts, or HS256 JWTs
(VOXBUS_CONTROL_JWT_SECRET, audience "voxbus-control") for short-lived operator sessions.
With neither configured, only loopback peers are served (development), as for media.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

import grpc
import jwt

AUDIENCE = "voxbus-control"
LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "unix:")


class ControlAuth:
    def __init__(self, tokens: str, jwt_secret: str) -> None:
        self.tokens = [t.strip() for t in tokens.split(",") if t.strip()]
        self.jwt_secret = jwt_secret

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.jwt_secret)

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None, peer: str) -> str:
        """"" when allowed, else why not (for UNAUTHENTICATED)."""
        if not self.enabled:
            if peer.startswith(LOOPBACK_PEERS):
                return ""
            return ("no control tokens are configured (VOXBUS_CONTROL_TOKENS or "
                    "VOXBUS_CONTROL_JWT_SECRET): loopback clients only")
        header = next((str(v) for k, v in metadata or () if k == "authorization"), "")
        if not header.lower().startswith("bearer "):
            return "missing 'authorization: Bearer <token>' metadata"
        token = header[7:].strip()
        if not token.isascii():  # compare_digest raises TypeError on non-ASCII str, and a JWT
            return "invalid token"  # is ASCII anyway (found by fuzzing)
        if any(hmac.compare_digest(token, known) for known in self.tokens):
            return ""
        if self.jwt_secret:
            try:
                jwt.decode(token, self.jwt_secret, algorithms=["HS256"], audience=AUDIENCE,
                           options={"require": ["exp", "aud"]})
                return ""
            except jwt.InvalidTokenError as exc:
                return f"invalid token: {exc}"
        return "invalid token"

    async def require(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        why = self.check(context.invocation_metadata(), context.peer())
        if why:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
