"""Call identifiers: each call id is exactly one NATS subject token."""

from __future__ import annotations

import re
import secrets

CALL_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class InvalidCallId(ValueError):
    """A call id that cannot be used as a single NATS subject token."""


def validate_call_id(call_id: str) -> str:
    """Return call_id unchanged or raise InvalidCallId with a reason a caller can act on."""
    if not isinstance(call_id, str) or not CALL_ID_PATTERN.fullmatch(call_id):
        raise InvalidCallId(
            f"invalid call id {call_id!r}: use 1-64 characters from A-Z a-z 0-9 _ - "
            "(no '.', '*', '>' or whitespace: a call id is one NATS subject token)"
        )
    return call_id


def new_call_id() -> str:
    """A fresh random call id (URL and subject safe)."""
    return "c" + secrets.token_hex(8)


def kv_token(name: str) -> str:
    """`name` as one KV key token (instance names carry host names, which may hold dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:128] or "_"
