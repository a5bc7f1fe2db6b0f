"""Carrier audio formats <-> the bus format (PCM16 LE mono at the bus rate)."""

from __future__ import annotations

from voxbus_common.audio import StreamResampler, frame_bytes
from voxbus_common.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, swap16, ulaw_to_pcm16

ENCODINGS = ("pcm16le", "l16be", "mulaw", "alaw")


class UnsupportedFormat(ValueError):
    """An audio format the gateway cannot transcode."""


def encoding_from_mime(mime: str) -> str:
    """`audio/x-mulaw`, `audio/PCMU`, `audio/x-l16`, `audio/l16`... -> one of ENCODINGS."""
    m = mime.lower().split(";")[0].strip()
    if m in ("audio/x-mulaw", "audio/mulaw", "audio/pcmu", "audio/basic", "mulaw", "pcmu",
             "ulaw"):
        return "mulaw"
    if m in ("audio/x-alaw", "audio/alaw", "audio/pcma", "alaw", "pcma"):
        return "alaw"
    if m in ("audio/l16", "audio/x-l16", "l16"):
        return "l16be"
    if m in ("audio/pcm", "pcm16", "pcm16le", "linear16", "audio/raw"):
        return "pcm16le"
    raise UnsupportedFormat(f"unsupported audio encoding {mime!r}")


class Transcoder:
    """Stateful (streaming resamplers) conversion for one call in both directions."""

    def __init__(self, encoding: str, rate: int, bus_rate: int) -> None:
        if encoding not in ENCODINGS:
            raise UnsupportedFormat(f"unsupported audio encoding {encoding!r}")
        if rate not in (8000, 16000, 24000, 48000):
            raise UnsupportedFormat(f"unsupported sample rate {rate}")
        self.encoding = encoding
        self.rate = rate
        self._in = StreamResampler(rate, bus_rate)
        self._out = StreamResampler(bus_rate, rate)
        self.sample_bytes = 1 if encoding in ("mulaw", "alaw") else 2
        self.frame_bytes = frame_bytes(rate) // 2 * self.sample_bytes  # one 20 ms frame

    def to_bus(self, payload: bytes) -> bytes:
        return self.pcm_to_bus(self.decode(payload))

    def decode(self, payload: bytes) -> bytes:
        """Carrier bytes -> PCM16 LE at the carrier's rate (where loss is concealed)."""
        if self.encoding == "mulaw":
            return ulaw_to_pcm16(payload)
        if self.encoding == "alaw":
            return alaw_to_pcm16(payload)
        if self.encoding == "l16be":
            return swap16(payload[: len(payload) - len(payload) % 2])
        return payload[: len(payload) - len(payload) % 2]

    def pcm_to_bus(self, pcm: bytes) -> bytes:
        """PCM16 LE at the carrier's rate -> the bus rate."""
        return self._in.process(pcm)

    def from_bus(self, pcm16: bytes) -> bytes:
        pcm = self._out.process(pcm16)
        if self.encoding == "mulaw":
            return pcm16_to_ulaw(pcm)
        if self.encoding == "alaw":
            return pcm16_to_alaw(pcm)
        if self.encoding == "l16be":
            return swap16(pcm)
        return pcm

    def silence(self) -> bytes:
        """One 20 ms frame of silence in the carrier's encoding."""
        if self.encoding == "mulaw":
            return b"\xff" * self.frame_bytes
        if self.encoding == "alaw":
            return b"\xd5" * self.frame_bytes
        return b"\x00" * self.frame_bytes
