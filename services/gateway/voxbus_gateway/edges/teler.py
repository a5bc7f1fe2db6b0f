"""FreJun Teler media stream: `start` then `audio` (base64 in `data.audio_b64`) in;
`audio` with a `chunk_id`, `interrupt` (one chunk) and `clear` out. Teler sends no marks,
stop or DTMF: the gateway's pacing is the playout clock and the socket closing ends the call.
Teler's "audio/l16" is taken as 16-bit little-endian PCM (checked against our simulator
only; see docs/edges.md)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from voxbus_gateway.edges.base import (
    ProtocolViolation,
    WsEdge,
    carrier_call_id,
    close_message,
    decode_b64,
)
from voxbus_gateway.edges.jitter import ReorderBuffer
from voxbus_gateway.edges.transcode import Transcoder, UnsupportedFormat, encoding_from_mime

if TYPE_CHECKING:
    from voxbus_gateway.call import Call


class TelerEdge(WsEdge):
    name = "teler"

    def __init__(self, ws: web.WebSocketResponse, bus_rate: int) -> None:
        super().__init__(ws)
        self.bus_rate = bus_rate
        self.codec = Transcoder("pcm16le", 8000, bus_rate)
        self.jitter = ReorderBuffer()
        self.chunk_id = 0

    async def handshake(self) -> str:
        async for doc in self.json_messages(handshake=True):
            if doc.get("type") != "start":
                raise ProtocolViolation(f"expected 'start' before {doc.get('type')!r}")
            data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
            assert isinstance(data, dict)
            try:
                encoding = encoding_from_mime(str(data.get("encoding", "audio/l16")))
                if encoding == "l16be":
                    encoding = "pcm16le"
                self.codec = Transcoder(encoding, int(data.get("sample_rate", 8000)),
                                        self.bus_rate)
            # OverflowError: int(Infinity), JSON's "sample_rate": Infinity (found by fuzzing)
            except (UnsupportedFormat, ValueError, TypeError, OverflowError) as exc:
                raise ProtocolViolation(str(exc), WSCloseCode.UNSUPPORTED_DATA) from None
            return carrier_call_id(str(doc.get("call_id") or doc.get("stream_id") or ""))
        raise ProtocolViolation("the stream closed before 'start'", WSCloseCode.OK)

    async def pump(self, call: Call) -> tuple[str, int]:
        async for doc in self.json_messages():
            if doc.get("type") != "audio":
                await self.protocol_error(f"unexpected message type {str(doc.get('type'))[:40]!r}")
                continue
            data: Any = doc.get("data")
            try:
                payload = decode_b64(data.get("audio_b64") if isinstance(data, dict) else None,
                                     self.codec.rate * 2)
            except ValueError as exc:
                await self.protocol_error(str(exc))
                continue
            seq = doc.get("message_id")
            frames = (self.jitter.push(seq, payload, b"") if isinstance(seq, int) and seq > 0
                      else [payload])
            for frame in frames:
                if frame:
                    await call.on_caller_audio(self.codec.to_bus(frame))
        return self.closed_reason()

    async def send_audio(self, pcm16: bytes) -> None:
        self.chunk_id += 1
        await self.send_json({"type": "audio", "data": {
            "audio_b64": base64.b64encode(self.codec.from_bus(pcm16)).decode(),
            "chunk_id": self.chunk_id}})

    async def clear(self) -> None:
        await self.send_json({"type": "clear"})

    async def finish(self, reason: str, code: int) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=close_message(reason))
