"""Twilio Media Streams, bidirectional (`<Connect><Stream>`), also spoken by Fonoster.

In: `connected`, `start` (streamSid, callSid, customParameters, mediaFormat), `media`
(base64 μ-law 8 kHz, 20 ms), `dtmf`, `mark`, `stop`. Out: `media`, `mark`, `clear`; a
transfer goes through the REST API (twilio_rest.py).
A mark follows every 200 ms of agent audio; Twilio echoes it once played, which is the
playout clock for heard-text accounting. Barge-in sends `clear`.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_gateway.edges.base import (
    ProtocolViolation,
    WsEdge,
    carrier_call_id,
    close_message,
    decode_b64,
)
from voxbus_gateway.edges.jitter import ReorderBuffer
from voxbus_gateway.edges.transcode import Transcoder, UnsupportedFormat, encoding_from_mime
from voxbus_gateway.edges.twilio_rest import TwilioRest

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 96000  # 1 s at 48 kHz PCM16; Twilio itself sends 160-byte frames


class TwilioEdge(WsEdge):
    """Twilio's protocol; Telnyx, Exotel and Plivo adapters override the names below."""

    name = "twilio"
    supports_marks = True
    snake_case = False  # Telnyx/Exotel speak the same protocol with snake_case keys
    stream_key = "streamSid"
    call_keys: tuple[str, ...] = ("callSid", "streamSid")
    default_encoding = "audio/x-mulaw"
    strict_call_id = True  # Twilio SIDs are always valid tokens: anything else is forged
    ignored_events: tuple[str, ...] = ()

    def __init__(self, ws: web.WebSocketResponse, bus_rate: int,
                 rest: TwilioRest | None = None) -> None:
        super().__init__(ws)
        self.bus_rate = bus_rate
        self.rest = rest  # Twilio proper only: transfers (carriers that copy the protocol: None)
        self.call_sid = ""
        self.account_sid = ""
        self.stream_sid = ""
        self.custom: dict[str, Any] = {}
        self.codec = Transcoder("mulaw", 8000, bus_rate)
        self.jitter = ReorderBuffer()

    def key(self, camel: str) -> str:
        if not self.snake_case:
            return camel
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)

    def encoding(self, declared: str) -> str:
        return encoding_from_mime(declared)

    def media_format(self, start: dict[str, Any]) -> Transcoder:
        fmt = start.get(self.key("mediaFormat")) or {}
        if not isinstance(fmt, dict):
            raise ProtocolViolation("mediaFormat must be an object")
        encoding = self.encoding(str(fmt.get("encoding", self.default_encoding)))
        return Transcoder(encoding, int(fmt.get(self.key("sampleRate"), 8000)), self.bus_rate)

    def call_id_from(self, doc: dict[str, Any], start: dict[str, Any]) -> str:
        raw = next((str(v) for k in self.call_keys
                    if (v := start.get(k) or doc.get(k))), "")
        if not self.strict_call_id:
            return carrier_call_id(raw)
        try:
            return validate_call_id(raw)
        except InvalidCallId as exc:
            raise ProtocolViolation(str(exc)) from None

    def mark_name(self, doc: dict[str, Any]) -> str | None:
        """The name of a played-mark echo, if `doc` is one."""
        mark = doc.get("mark")
        if doc.get("event") == "mark" and isinstance(mark, dict):
            name = mark.get("name")
            return name if isinstance(name, str) else None
        return None

    async def handshake(self) -> str:
        async for doc in self.json_messages(handshake=True):
            event = doc.get("event")
            if event == "connected":
                continue
            if event != "start":
                raise ProtocolViolation(f"expected 'start' before {event!r}")
            start = doc.get("start")
            if not isinstance(start, dict):
                raise ProtocolViolation("'start' message without a start object")
            self.stream_sid = str(doc.get(self.stream_key) or start.get(self.stream_key) or "")
            self.call_sid = str(start.get("callSid") or "")
            self.account_sid = str(start.get("accountSid") or "")
            custom = start.get(self.key("customParameters"))
            self.custom = custom if isinstance(custom, dict) else {}
            caller = str(self.custom.get("caller") or self.custom.get("from") or "")[:64]
            # JSON can escape a lone surrogate ("\ud800"): not UTF-8, so the call's protobuf
            # events refused it and the call failed at start (found by fuzzing)
            self.caller = caller.encode("utf-8", "ignore").decode()
            try:
                self.codec = self.media_format(start)
            # OverflowError: int(Infinity), JSON's "sampleRate": Infinity (found by fuzzing)
            except (UnsupportedFormat, ValueError, TypeError, OverflowError) as exc:
                raise ProtocolViolation(str(exc), WSCloseCode.UNSUPPORTED_DATA) from None
            return self.call_id_from(doc, start)
        raise ProtocolViolation("the stream closed before 'start'", WSCloseCode.OK)

    async def pump(self, call: Call) -> tuple[str, int]:
        async for doc in self.json_messages():
            event = doc.get("event")
            mark = self.mark_name(doc)
            if event == "media":
                await self._media(call, doc.get("media"))
            elif mark is not None:
                await call.on_mark(mark)
            elif event == "dtmf":
                dtmf = doc.get("dtmf")
                if isinstance(dtmf, dict) and isinstance(dtmf.get("digit"), str):
                    await call.on_dtmf(dtmf["digit"])
            elif event == "stop":
                return "carrier ended the stream", WSCloseCode.OK
            elif event in self.ignored_events:
                continue
            else:
                await self.protocol_error(f"unexpected event {str(event)[:40]!r}")
        return self.closed_reason()

    async def _media(self, call: Call, media: Any) -> None:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            await self.protocol_error("media without a payload")
            return
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return
        try:
            payload = decode_b64(media["payload"], MAX_PAYLOAD_BYTES)
        except ValueError as exc:
            await self.protocol_error(str(exc))
            return
        try:
            seq = int(media.get("chunk") or 0)
        except (TypeError, ValueError, OverflowError):  # "chunk": Infinity (fuzzing)
            seq = 0
        frames = self.jitter.push(seq, payload, self.codec.silence()) if seq else [payload]
        for frame in frames:
            await call.on_caller_audio(self.codec.to_bus(frame))

    async def send_audio(self, pcm16: bytes) -> None:
        payload = base64.b64encode(self.codec.from_bus(pcm16)).decode()
        await self.send_json({"event": "media", self.stream_key: self.stream_sid,
                              "media": {"payload": payload}})

    async def send_mark(self, name: str) -> None:
        await self.send_json({"event": "mark", self.stream_key: self.stream_sid,
                              "mark": {"name": name}})

    async def clear(self) -> None:
        await self.send_json({"event": "clear", self.stream_key: self.stream_sid})

    async def transfer(self, target: str) -> bool:
        """Dial `target` through Twilio's REST API (True), or say we cannot (False)."""
        if self.rest is None or not self.call_sid:
            return False
        await self.rest.transfer(self.call_sid, target, self.account_sid)
        return True

    async def finish(self, reason: str, code: int) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=close_message(reason))
