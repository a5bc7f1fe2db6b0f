"""Short-lived media tokens (JWT, HS256) with key rotation.

Keys come from configuration as `kid:secret[,kid:secret...]`: the first key signs, every
listed key verifies, so a new key is rolled out first in second place, then moved first,
then the old one is dropped. A token may bind one call id (claim `call`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

AUDIENCE = "voxbus-media"


class InvalidToken(ValueError):
    """A media token that must be refused; the message says why (never the secret)."""


@dataclass(frozen=True)
class MediaClaims:
    subject: str
    call_id: str
    expires_at: int


def parse_keys(spec: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        kid, sep, secret = part.partition(":")
        if not sep or not kid or len(secret) < 16:
            raise ValueError("media token keys look like kid:secret (secret of 16+ characters)")
        keys[kid] = secret
    return keys


def new_key_spec(kid: str = "dev") -> str:
    return f"{kid}:{secrets.token_urlsafe(32)}"


class MediaTokens:
    def __init__(self, spec: str) -> None:
        self.keys = parse_keys(spec)
        self.signing_kid = next(iter(self.keys), "")

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def issue(self, subject: str = "caller", call_id: str = "", ttl_s: int = 300) -> str:
        if not self.enabled:
            raise ValueError("no media token keys configured")
        now = int(time.time())
        claims: dict[str, object] = {"sub": subject, "aud": AUDIENCE, "iat": now,
                                     "exp": now + ttl_s}
        if call_id:
            claims["call"] = call_id
        return jwt.encode(claims, self.keys[self.signing_kid], algorithm="HS256",
                          headers={"kid": self.signing_kid})

    def verify(self, token: str, call_id: str = "") -> MediaClaims:
        if not token:
            raise InvalidToken("a media token is required (query parameter 'token')")
        if not token.isascii():  # a JWT is base64url; aiohttp hands a header's invalid UTF-8
            # bytes over as surrogates, on which PyJWT raised UnicodeEncodeError (fuzzing)
            raise InvalidToken("malformed token: not ASCII")
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        key = self.keys.get(str(kid))
        if key is None:
            raise InvalidToken("token signed with an unknown or retired key")
        try:
            claims = jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE,
                                options={"require": ["exp", "aud"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        bound = str(claims.get("call", ""))
        if bound and call_id and bound != call_id:
            raise InvalidToken("token is for another call")
        return MediaClaims(str(claims.get("sub", "")), bound, int(claims["exp"]))
