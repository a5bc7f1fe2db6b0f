"""Raw PCM16 WebSocket edge: `ws://HOST:PORT/v1/pcm?call_id=..&sample_rate=16000`.

Caller -> gateway: binary frames of PCM16 LE mono at `sample_rate` (any chunking up to
1 s); text frames `{"type": "stop"}` to hang up. Gateway -> caller: binary agent audio
(same format, paced in real time) and JSON text events (see docs/edges.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from voxbus_common.audio import StreamResampler
from voxbus_gateway.edges.base import WsEdge, parse_json_object

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

SUPPORTED_RATES = (8000, 16000, 24000, 48000)
MAX_FRAME_SECONDS = 1.0


class InvalidAudio(ValueError):
    """Caller bytes that are not PCM16 audio of the announced format."""


def check_pcm_payload(data: bytes, sample_rate: int) -> None:
    """Refuse payloads that cannot be PCM16 mono frames, with a reason the caller can fix."""
    if data[:4] in (b"RIFF", b"OggS", b"fLaC") or data[:3] == b"ID3":
        raise InvalidAudio("expected raw PCM16 frames, got an audio file container; "
                           "send the samples without a header")
    if len(data) % 2:
        raise InvalidAudio(f"frame of {len(data)} bytes is not whole 16-bit samples")
    if len(data) > sample_rate * 2 * MAX_FRAME_SECONDS:
        raise InvalidAudio(f"frame of {len(data)} bytes is longer than {MAX_FRAME_SECONDS:.0f} s "
                           "of audio; send 20 ms frames")


class PcmWebSocketEdge(WsEdge):
    """With `marks`, the client echoes `{"type": "mark", "name": ..}` once it has played the
    audio sent before each mark event (the browser page does): a true playout clock."""

    def __init__(self, ws: web.WebSocketResponse, call_id: str, caller_rate: int,
                 bus_rate: int, marks: bool = False, name: str = "pcm-ws") -> None:
        super().__init__(ws)
        self.name = name
        self.supports_marks = marks
        self.call_id = call_id
        self.caller_rate = caller_rate
        self.to_bus = StreamResampler(caller_rate, bus_rate)
        self.to_caller = StreamResampler(bus_rate, caller_rate)

    async def handshake(self) -> str:
        return self.call_id

    async def announce(self) -> None:
        """Sent once the call is set up: from then on the control API can steer it."""
        await self.send_event({"type": "call", "call_id": self.call_id,
                               "sample_rate": self.caller_rate})

    async def send_audio(self, pcm16: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(self.to_caller.process(pcm16))

    async def send_event(self, event: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(event))

    async def clear(self) -> None:
        await self.send_event({"type": "clear"})

    async def send_mark(self, name: str) -> None:
        await self.send_event({"type": "mark", "name": name})

    async def pump(self, call: Call) -> tuple[str, int]:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                try:
                    check_pcm_payload(msg.data, self.caller_rate)
                except InvalidAudio as exc:
                    await self.send_event({"type": "error", "message": str(exc)})
                    return f"invalid audio: {exc}", WSCloseCode.UNSUPPORTED_DATA
                await call.on_caller_audio(self.to_bus.process(msg.data))
            elif msg.type == WSMsgType.TEXT:
                try:
                    command = parse_json_object(msg.data)
                except ValueError:
                    await self.protocol_error(
                        "text frames must be JSON objects, e.g. {\"type\": \"stop\"}")
                    continue
                kind = command.get("type")
                if kind == "stop":
                    return "caller hung up", WSCloseCode.OK
                if kind == "dtmf" and isinstance(command.get("digit"), str):
                    await call.on_dtmf(command["digit"][:1])
                    continue
                if kind == "mark" and isinstance(command.get("name"), str):
                    await call.on_mark(command["name"])
                    continue
                await self.protocol_error(f"unknown command {str(command)[:60]!r}; "
                                          "known: stop, dtmf, mark")
            elif msg.type == WSMsgType.ERROR:
                return f"socket error: {self.ws.exception()}", WSCloseCode.ABNORMAL_CLOSURE
        return "caller disconnected", WSCloseCode.OK
