"""Twilio Media Streams, bidirectional (`<Connect><Stream>`), also spoken by Fonoster.

In: `connected`, `start` (streamSid, callSid, customParameters, mediaFormat), `media`
(base64 μ-law 8 kHz, 20 ms), `dtmf`, `mark`, `stop`. Out: `media`, `mark`, `clear`.
A mark follows every 200 ms of agent audio; Twilio echoes it once played, which is the
playout clock for heard-text accounting. Barge-in sends `clear`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_gateway.edges.base import ProtocolViolation, WsEdge, parse_json_object
from voxbus_gateway.edges.jitter import ReorderBuffer
from voxbus_gateway.edges.transcode import Transcoder, UnsupportedFormat, encoding_from_mime

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 8000  # 1 s of 8 kHz μ-law; Twilio sends 160-byte frames


class TwilioEdge(WsEdge):
    name = "twilio"
    supports_marks = True
    snake_case = False  # Telnyx/Exotel speak the same protocol with snake_case keys

    def __init__(self, ws: web.WebSocketResponse, bus_rate: int) -> None:
        super().__init__(ws)
        self.bus_rate = bus_rate
        self.stream_sid = ""
        self.custom: dict[str, Any] = {}
        self.codec = Transcoder("mulaw", 8000, bus_rate)
        self.jitter = ReorderBuffer()

    def key(self, camel: str) -> str:
        if not self.snake_case:
            return camel
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)

    def media_format(self, start: dict[str, Any]) -> Transcoder:
        fmt = start.get(self.key("mediaFormat")) or {}
        if not isinstance(fmt, dict):
            raise ProtocolViolation("mediaFormat must be an object")
        encoding = encoding_from_mime(str(fmt.get("encoding", "audio/x-mulaw")))
        return Transcoder(encoding, int(fmt.get(self.key("sampleRate"), 8000)), self.bus_rate)

    async def handshake(self) -> str:
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                raise ProtocolViolation("expected JSON text messages", WSCloseCode.UNSUPPORTED_DATA)
            try:
                doc = parse_json_object(msg.data)
            except ValueError as exc:
                await self.protocol_error(f"bad JSON: {exc}")
                continue
            event = doc.get("event")
            if event == "connected":
                continue
            if event != "start":
                raise ProtocolViolation(f"expected 'start' before {event!r}")
            start = doc.get("start")
            if not isinstance(start, dict):
                raise ProtocolViolation("'start' message without a start object")
            self.stream_sid = str(doc.get(self.key("streamSid")) or
                                  start.get(self.key("streamSid")) or "")
            custom = start.get(self.key("customParameters"))
            self.custom = custom if isinstance(custom, dict) else {}
            try:
                self.codec = self.media_format(start)
            except (UnsupportedFormat, ValueError, TypeError) as exc:
                raise ProtocolViolation(str(exc), WSCloseCode.UNSUPPORTED_DATA) from None
            raw_id = str(start.get(self.key("callSid")) or self.stream_sid)
            try:
                return validate_call_id(raw_id)
            except InvalidCallId as exc:
                raise ProtocolViolation(str(exc)) from None
        raise ProtocolViolation("the stream closed before 'start'", WSCloseCode.OK)

    async def pump(self, call: Call) -> tuple[str, int]:
        async for msg in self.ws:
            if msg.type == WSMsgType.ERROR:
                return f"socket error: {self.ws.exception()}", WSCloseCode.ABNORMAL_CLOSURE
            if msg.type != WSMsgType.TEXT:
                await self.protocol_error("binary messages are not part of this protocol")
                continue
            try:
                doc = parse_json_object(msg.data)
            except ValueError as exc:
                await self.protocol_error(f"bad JSON: {exc}")
                continue
            event = doc.get("event")
            if event == "media":
                await self._media(call, doc.get("media"))
            elif event == "mark":
                mark = doc.get("mark")
                if isinstance(mark, dict) and isinstance(mark.get("name"), str):
                    await call.on_mark(mark["name"])
            elif event == "dtmf":
                dtmf = doc.get("dtmf")
                if isinstance(dtmf, dict) and isinstance(dtmf.get("digit"), str):
                    await call.on_dtmf(dtmf["digit"])
            elif event == "stop":
                return "carrier ended the stream", WSCloseCode.OK
            else:
                await self.protocol_error(f"unexpected event {str(event)[:40]!r}")
        return "carrier disconnected", WSCloseCode.OK

    async def _media(self, call: Call, media: Any) -> None:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            await self.protocol_error("media without a payload")
            return
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return
        try:
            payload = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, ValueError):
            await self.protocol_error("media payload is not valid base64")
            return
        if not payload or len(payload) > MAX_PAYLOAD_BYTES:
            await self.protocol_error(f"media payload of {len(payload)} bytes refused")
            return
        try:
            seq = int(media.get("chunk") or 0)
        except (TypeError, ValueError):
            seq = 0
        frames = self.jitter.push(seq, payload, self.codec.silence()) if seq else [payload]
        for frame in frames:
            await call.on_caller_audio(self.codec.to_bus(frame))

    async def send_audio(self, pcm16: bytes) -> None:
        payload = base64.b64encode(self.codec.from_bus(pcm16)).decode()
        await self.send_json({"event": "media", self.key("streamSid"): self.stream_sid,
                              "media": {"payload": payload}})

    async def send_mark(self, name: str) -> None:
        await self.send_json({"event": "mark", self.key("streamSid"): self.stream_sid,
                              "mark": {"name": name}})

    async def clear(self) -> None:
        await self.send_json({"event": "clear", self.key("streamSid"): self.stream_sid})

    async def finish(self, reason: str, code: int) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode()[:120])
