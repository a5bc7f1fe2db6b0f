"""Asterisk AudioSocket over TCP (Asterisk connects to us; plaintext: private networks only).
Frame = type (1 byte) + length (uint16 big-endian) + payload. 0x01 UUID (first), 0x10
audio (signed 16-bit LE, 8 kHz mono, 20 ms = 320 bytes), 0x03 DTMF (one ASCII byte), 0x00
hang-up, 0xff error. There is no clear command: we pace audio in real time, so at most the
playout lead is ever buffered on the Asterisk side."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import TYPE_CHECKING, Any

from voxbus_common.log_limit import WarningBudget
from voxbus_gateway.edges.base import ProtocolViolation, carrier_call_id
from voxbus_gateway.edges.transcode import Transcoder

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF


class AudioSocketEdge:
    name = "audiosocket"
    supports_marks = False

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 bus_rate: int) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = Transcoder("pcm16le", 8000, bus_rate)
        # bad frames are dropped, not fatal: their warnings must not flood the log
        self.warnings = WarningBudget(log, extra={"edge": self.name})

    async def _frame(self) -> tuple[int, bytes]:
        header = await self.reader.readexactly(3)
        kind, length = header[0], struct.unpack(">H", header[1:])[0]
        return kind, await self.reader.readexactly(length) if length else b""

    async def _send(self, kind: int, payload: bytes = b"") -> None:
        if self.writer.is_closing():
            return
        self.writer.write(bytes([kind]) + struct.pack(">H", len(payload)) + payload)
        await self.writer.drain()

    async def handshake(self) -> str:
        try:
            kind, payload = await self._frame()
        except asyncio.IncompleteReadError:
            raise ProtocolViolation("connection closed before the UUID frame", 1000) from None
        if kind != UUID or len(payload) != 16:
            raise ProtocolViolation("the first AudioSocket frame must be a 16-byte UUID")
        return carrier_call_id(payload.hex())

    async def pump(self, call: Call) -> tuple[str, int]:
        while True:
            try:
                kind, payload = await self._frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                return "carrier disconnected", 1000
            if kind == AUDIO:
                if len(payload) % 2:
                    self.warnings.warning("odd-sized AudioSocket audio frame dropped",
                                          extra={"bytes": len(payload)})
                    continue
                await call.on_caller_audio(self.codec.to_bus(payload))
            elif kind == DTMF and payload:
                await call.on_dtmf(payload[:1].decode("ascii", "replace"))
            elif kind == HANGUP:
                return "carrier hung up", 1000
            elif kind == ERROR:
                return f"carrier error {payload[:16].hex()}", 1011  # (up to 64 KiB sent)
            else:
                self.warnings.warning("unknown AudioSocket frame type dropped",
                                      extra={"frame_type": f"0x{kind:02x}"})

    async def send_audio(self, pcm16: bytes) -> None:
        await self._send(AUDIO, self.codec.from_bus(pcm16))

    async def send_event(self, event: dict[str, Any]) -> None:
        """AudioSocket has no event channel."""

    async def send_mark(self, name: str) -> None:
        """No marks in AudioSocket."""

    async def clear(self) -> None:
        """Nothing to clear beyond the pacing lead."""

    async def finish(self, reason: str, code: int) -> None:
        self.warnings.flush()
        with contextlib.suppress(ConnectionError):
            await self._send(HANGUP)
        self.writer.close()
