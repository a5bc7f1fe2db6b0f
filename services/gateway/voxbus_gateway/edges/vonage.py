"""Vonage Voice API WebSocket: the first text message is `websocket:connected` (with the
audio content type and the headers set in the NCCO); audio is binary 16-bit LE PCM at 8 or
16 kHz in 20 ms frames, both ways. Barge-in sends `{"action": "clear"}`; marks use
`{"action": "notify"}`, echoed as `websocket:notify`. The control JSON is not verified
against Vonage itself (see docs/edges.md)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from voxbus_gateway.edges.base import ProtocolViolation, WsEdge, carrier_call_id, close_message
from voxbus_gateway.edges.base import parse_json_object as parse
from voxbus_gateway.edges.transcode import Transcoder

if TYPE_CHECKING:
    from voxbus_gateway.call import Call


class VonageEdge(WsEdge):
    name = "vonage"
    supports_marks = True

    def __init__(self, ws: web.WebSocketResponse, bus_rate: int) -> None:
        super().__init__(ws)
        self.bus_rate = bus_rate
        self.codec = Transcoder("pcm16le", 16000, bus_rate)

    async def handshake(self) -> str:
        msg = await self.ws.receive()
        if msg.type != WSMsgType.TEXT:
            raise ProtocolViolation("expected the websocket:connected message first")
        try:
            doc = parse(msg.data)
        except ValueError as exc:
            raise ProtocolViolation(f"bad JSON: {exc}") from None
        if doc.get("event") != "websocket:connected":
            raise ProtocolViolation(f"expected websocket:connected, got {doc.get('event')!r}")
        match = re.search(r"rate=(\d+)", str(doc.get("content-type", "audio/l16;rate=16000")))
        try:
            self.codec = Transcoder("pcm16le", int(match.group(1)) if match else 16000,
                                    self.bus_rate)
        except ValueError as exc:  # UnsupportedFormat, or a rate of 4300+ digits (fuzzing)
            raise ProtocolViolation(str(exc), WSCloseCode.UNSUPPORTED_DATA) from None
        raw = doc.get("uuid") or doc.get("call_id") or doc.get("conversation_uuid") or ""
        return carrier_call_id(str(raw))

    async def pump(self, call: Call) -> tuple[str, int]:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                if len(msg.data) % 2 or len(msg.data) > self.codec.rate * 2:
                    await self.protocol_error(f"audio frame of {len(msg.data)} bytes refused")
                    continue
                await call.on_caller_audio(self.codec.to_bus(msg.data))
            elif msg.type == WSMsgType.TEXT:
                try:
                    doc = parse(msg.data)
                except ValueError as exc:
                    await self.protocol_error(f"bad JSON: {exc}")
                    continue
                await self._control(call, doc)
            elif msg.type == WSMsgType.ERROR:
                return f"socket error: {self.ws.exception()}", WSCloseCode.ABNORMAL_CLOSURE
        return "carrier disconnected", WSCloseCode.OK

    async def _control(self, call: Call, doc: dict[str, Any]) -> None:
        event = doc.get("event")
        payload = doc.get("payload") if isinstance(doc.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        if event == "websocket:notify" and isinstance(payload.get("mark"), str):
            await call.on_mark(payload["mark"])
        elif event == "websocket:dtmf":
            dtmf = doc.get("dtmf")  # any JSON value: only an object has a digit (fuzzing)
            digit = doc.get("digit") or (dtmf.get("digit") if isinstance(dtmf, dict) else None)
            if isinstance(digit, str):
                await call.on_dtmf(digit)
        elif event not in ("websocket:cleared",):
            await self.protocol_error(f"unexpected event {str(event)[:40]!r}")

    async def send_audio(self, pcm16: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(self.codec.from_bus(pcm16))

    async def send_mark(self, name: str) -> None:
        await self.send_json({"action": "notify", "payload": {"mark": name}})

    async def clear(self) -> None:
        await self.send_json({"action": "clear"})

    async def finish(self, reason: str, code: int) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=close_message(reason))
