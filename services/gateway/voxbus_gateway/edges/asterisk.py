"""Asterisk `chan_websocket` (Asterisk 20.16 / 21.11 / 22.6 / 23+): binary media frames in
the channel's format; text control. Asterisk opens with `MEDIA_START key:value ...`
(format, optimal_frame_size, channel_id); sends `DTMF_END digit:N` and `MEDIA_XOFF`/
`MEDIA_XON` (flow control). We send media, `FLUSH_MEDIA` on barge-in and `HANGUP`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from voxbus_gateway.edges.base import ProtocolViolation, WsEdge, carrier_call_id, close_message
from voxbus_gateway.edges.transcode import Transcoder, UnsupportedFormat

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

FORMATS = {"ulaw": ("mulaw", 8000), "alaw": ("alaw", 8000), "slin": ("pcm16le", 8000),
           "slin16": ("pcm16le", 16000), "slin24": ("pcm16le", 24000),
           "slin48": ("pcm16le", 48000)}
MAX_MESSAGE = 65500


def parse_fields(text: str) -> tuple[str, dict[str, str]]:
    """`COMMAND key:value key:value` -> (COMMAND, {key: value})."""
    parts = text.strip().split()
    if not parts:
        return "", {}
    fields = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    return parts[0], fields


class AsteriskWsEdge(WsEdge):
    name = "asterisk-ws"

    def __init__(self, ws: web.WebSocketResponse, bus_rate: int) -> None:
        super().__init__(ws)
        self.bus_rate = bus_rate
        self.codec = Transcoder("mulaw", 8000, bus_rate)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def handshake(self) -> str:
        msg = await self.ws.receive()
        if msg.type != WSMsgType.TEXT:
            raise ProtocolViolation("expected MEDIA_START first")
        command, fields = parse_fields(msg.data)
        if command != "MEDIA_START":
            raise ProtocolViolation(f"expected MEDIA_START, got {command[:30]!r}")
        fmt = FORMATS.get(fields.get("format", "ulaw"))
        if fmt is None:
            raise ProtocolViolation(f"unsupported format {fields.get('format')!r}",
                                    WSCloseCode.UNSUPPORTED_DATA)
        try:
            self.codec = Transcoder(fmt[0], fmt[1], self.bus_rate)
        except UnsupportedFormat as exc:
            raise ProtocolViolation(str(exc), WSCloseCode.UNSUPPORTED_DATA) from None
        return carrier_call_id(fields.get("channel_id") or fields.get("connection_id") or "")

    async def pump(self, call: Call) -> tuple[str, int]:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                if len(msg.data) > MAX_MESSAGE or (self.codec.sample_bytes == 2
                                                   and len(msg.data) % 2):
                    await self.protocol_error(f"media message of {len(msg.data)} bytes refused")
                    continue
                await call.on_caller_audio(self.codec.to_bus(msg.data))
            elif msg.type == WSMsgType.TEXT:
                command, fields = parse_fields(msg.data)
                if command == "DTMF_END" and fields.get("digit"):
                    await call.on_dtmf(fields["digit"])
                elif command == "MEDIA_XOFF":
                    self.flowing.clear()
                elif command == "MEDIA_XON":
                    self.flowing.set()
                elif command == "HANGUP":
                    return "carrier hung up", WSCloseCode.OK
                elif command not in ("DTMF_BEGIN", "MEDIA_BUFFERING_COMPLETED", "STATUS"):
                    await self.protocol_error(f"unknown control {command[:40]!r}")
            elif msg.type == WSMsgType.ERROR:
                return f"socket error: {self.ws.exception()}", WSCloseCode.ABNORMAL_CLOSURE
        return "carrier disconnected", WSCloseCode.OK

    async def send_audio(self, pcm16: bytes) -> None:
        await self.flowing.wait()  # Asterisk asked us to hold (MEDIA_XOFF)
        if not self.ws.closed:
            await self.ws.send_bytes(self.codec.from_bus(pcm16))

    async def clear(self) -> None:
        if not self.ws.closed:
            await self.ws.send_str("FLUSH_MEDIA")

    async def finish(self, reason: str, code: int) -> None:
        if not self.ws.closed:
            await self.ws.send_str("HANGUP")
            await self.ws.close(code=code, message=close_message(reason))
