"""Raw PCM16 WebSocket edge: `ws://HOST:PORT/v1/pcm?call_id=..&sample_rate=16000`.

Caller -> gateway: binary frames of PCM16 LE mono at `sample_rate` (any chunking up to
1 s); text frames `{"type": "stop"}` to hang up. Gateway -> caller: binary agent audio
(same format, paced in real time) and JSON text events (see docs/edges.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from voxbus_common.audio import StreamResampler

log = logging.getLogger(__name__)

SUPPORTED_RATES = (8000, 16000, 24000, 48000)
MAX_FRAME_SECONDS = 1.0


class InvalidAudio(ValueError):
    """Caller bytes that are not PCM16 audio of the announced format."""


def check_pcm_payload(data: bytes, sample_rate: int) -> None:
    """Refuse payloads that cannot be PCM16 mono frames, with a reason the caller can fix."""
    if data[:4] in (b"RIFF", b"OggS", b"fLaC", b"ID3\x03") or data[:3] == b"ID3":
        raise InvalidAudio("expected raw PCM16 frames, got an audio file container; "
                           "send the samples without a header")
    if len(data) % 2:
        raise InvalidAudio(f"frame of {len(data)} bytes is not whole 16-bit samples")
    if len(data) > sample_rate * 2 * MAX_FRAME_SECONDS:
        raise InvalidAudio(f"frame of {len(data)} bytes is longer than {MAX_FRAME_SECONDS:.0f} s "
                           "of audio; send 20 ms frames")


class PcmWebSocketEdge:
    """EdgeSink over one aiohttp WebSocket."""

    name = "pcm-ws"

    def __init__(self, ws: web.WebSocketResponse, caller_rate: int, bus_rate: int) -> None:
        self.ws = ws
        self.caller_rate = caller_rate
        self.to_bus = StreamResampler(caller_rate, bus_rate)
        self.to_caller = StreamResampler(bus_rate, caller_rate)

    async def send_audio(self, pcm16: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(self.to_caller.process(pcm16))

    async def send_event(self, event: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(event))

    async def clear(self) -> None:
        await self.send_event({"type": "clear"})

    async def error(self, message: str) -> None:
        await self.send_event({"type": "error", "message": message})

    async def close(self, code: int, message: str) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=message.encode()[:120])


async def pump_caller(edge: PcmWebSocketEdge, call: Any) -> tuple[str, int]:
    """Read the caller's socket until it ends; returns the hang-up reason and close code."""
    async for msg in edge.ws:
        if msg.type == WSMsgType.BINARY:
            try:
                check_pcm_payload(msg.data, edge.caller_rate)
            except InvalidAudio as exc:
                await edge.error(str(exc))
                return f"invalid audio: {exc}", WSCloseCode.UNSUPPORTED_DATA
            await call.on_caller_audio(edge.to_bus.process(msg.data))
        elif msg.type == WSMsgType.TEXT:
            try:
                command = json.loads(msg.data)
            except ValueError:
                await edge.error("text frames must be JSON, e.g. {\"type\": \"stop\"}")
                continue
            if isinstance(command, dict) and command.get("type") == "stop":
                return "caller hung up", WSCloseCode.OK
            await edge.error(f"unknown command {str(command)[:60]!r}; known: stop")
        elif msg.type == WSMsgType.ERROR:
            return f"socket error: {edge.ws.exception()}", WSCloseCode.ABNORMAL_CLOSURE
    return "caller disconnected", WSCloseCode.OK
