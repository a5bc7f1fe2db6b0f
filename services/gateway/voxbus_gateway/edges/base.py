"""Shared plumbing of WebSocket edges: JSON sending, protocol-error accounting, closing."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from voxbus_common.ids import new_call_id, validate_call_id
from voxbus_common.log_limit import WarningBudget

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)

MAX_PROTOCOL_ERRORS = 50  # a caller that keeps sending garbage is cut off


class ProtocolViolation(Exception):
    """The peer broke the protocol badly enough that the call ends (reason, close code)."""

    def __init__(self, reason: str, code: int = WSCloseCode.POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.code = code


class WsEdge:
    """One caller connection over an aiohttp WebSocket. Subclasses speak a protocol."""

    name = "ws"
    supports_marks = False

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.caller = ""  # identity for long-term memory, when the protocol tells it
        self.errors = 0
        self.socket_error = ""
        # every error is answered to the peer; only the first few are logged in full
        self.warnings = WarningBudget(log)

    async def handshake(self) -> str:
        """Read the protocol's opening messages; return the call id."""
        raise ProtocolViolation("edge has no handshake")

    async def pump(self, call: Call) -> tuple[str, int]:
        """Read caller messages until the call ends; return (reason, close code)."""
        raise ProtocolViolation("edge has no pump")

    async def send_audio(self, pcm16: bytes) -> None:
        raise ProtocolViolation("edge cannot play audio")

    async def send_event(self, event: dict[str, Any]) -> None:
        """Most carrier protocols have no place for our events: they are dropped."""

    async def send_mark(self, name: str) -> None:
        """Edges without marks ignore them."""

    async def clear(self) -> None:
        """Edges without a clear command ignore it."""

    async def transfer(self, target: str) -> bool:
        """Hand the call to `target` through the carrier; False: this edge cannot (the
        caller's client gets the transfer event and this leg ends)."""
        return False

    async def send_json(self, doc: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(doc))

    async def json_messages(self, handshake: bool = False) -> AsyncIterator[dict[str, Any]]:
        """JSON objects from a JSON-only protocol. Bad JSON and stray binary frames are
        protocol errors (binary is fatal during the handshake); a socket error ends the
        iteration and is kept for `closed_reason`."""
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.ERROR:
                    self.socket_error = str(self.ws.exception())
                    return
                if msg.type != WSMsgType.TEXT:
                    if handshake:
                        raise ProtocolViolation("expected JSON text messages",
                                                WSCloseCode.UNSUPPORTED_DATA)
                    await self.protocol_error("binary messages are not part of this protocol")
                    continue
                try:
                    doc = parse_json_object(msg.data)
                except ValueError as exc:
                    await self.protocol_error(f"bad JSON: {exc}")
                    continue
                yield doc
        finally:  # the socket is done: report suppressed warnings (some edges' finish() is
            self.warnings.flush()  # their own and does not)

    def closed_reason(self) -> tuple[str, int]:
        if self.socket_error:
            return f"socket error: {self.socket_error}", WSCloseCode.ABNORMAL_CLOSURE
        return "carrier disconnected", WSCloseCode.OK

    async def protocol_error(self, message: str) -> None:
        """Report a recoverable protocol error; too many of them end the call."""
        self.errors += 1
        self.warnings.extra["edge"] = self.name  # (some edges name themselves after init)
        self.warnings.warning("protocol error: %s", message)
        await self.send_event({"type": "error", "message": message})
        if self.errors >= MAX_PROTOCOL_ERRORS:
            self.warnings.flush()  # (edges whose finish() is their own do not flush)
            raise ProtocolViolation(f"too many protocol errors (last: {message})")

    async def finish(self, reason: str, code: int) -> None:
        self.warnings.flush()
        await self.send_event({"type": "ended", "reason": reason})
        if not self.ws.closed:
            await self.ws.close(code=code, message=close_message(reason))


def close_message(reason: str) -> bytes:
    """A close frame's reason: at most 120 bytes of valid UTF-8 (RFC 6455). Reasons quote
    what the peer sent: a plain byte cut tore a character, and peers then failed the close
    with a protocol error instead of reading our code (found by fuzzing)."""
    return reason.encode("utf-8", "replace")[:120].decode("utf-8", "ignore").encode()


def carrier_call_id(raw: str) -> str:
    """A carrier's call identifier made into one subject token (Telnyx ids contain ':')."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in raw)
    cleaned = cleaned.strip("_")[:64]
    return validate_call_id(cleaned) if cleaned else new_call_id()


def decode_b64(value: Any, limit: int) -> bytes:
    """Strict base64 of a bounded size, or ValueError with a reason."""
    if not isinstance(value, str):
        raise ValueError("audio payload missing")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("audio payload is not valid base64") from None
    if not data or len(data) > limit:
        raise ValueError(f"audio payload of {len(data)} bytes refused")
    return data


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object or ValueError with a short reason."""
    try:
        doc = json.loads(text)
    except RecursionError:  # json recurses per level: "[" * 1000 fits in one frame (fuzzing)
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    return doc
