"""Protobuf payloads on the bus: decoding with an error that names the type."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)


class BadMessage(ValueError):
    """A payload on the bus that does not decode as the subject's message type."""


def decode(msg_type: type[M], data: bytes) -> M:
    """Parse a protobuf payload or raise BadMessage with the type name in the error."""
    out = msg_type()
    try:
        out.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise BadMessage(f"cannot decode {msg_type.__name__}: {exc}") from exc
    return out
