"""Audio utilities shared by the edges and the speech services: PCM16 framing and resampling.

Everything on the bus is PCM16 little-endian mono; edges convert at the border.
"""

from __future__ import annotations

import numpy as np
import soxr

from voxbus_common.fir_resample import IntegerResampler

FRAME_MS = 20


def frame_bytes(sample_rate: int, ms: int = FRAME_MS) -> int:
    """Bytes in one PCM16 mono frame of `ms` milliseconds."""
    return sample_rate * ms // 1000 * 2


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """PCM16 LE bytes -> float32 in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> PCM16 LE bytes (clipped)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return bytes((clipped * 32767.0).astype("<i2").tobytes())


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole PCM16 buffer (soxr, high quality). Identity when rates match."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, src_rate, dst_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


class StreamResampler:
    """Streaming resampler that keeps filter state between chunks (no clicks at borders).

    Integer ratios (8 <-> 16 kHz, 16 <-> 48 kHz: every telephone edge) use a short FIR that
    holds 1-2 ms (fir_resample.py). soxr, used for the other ratios (22.05/24 kHz), holds
    back audio in blocks: its VHQ quality at least keeps the hold near 21 ms for large
    chunks (HQ 89 ms, MQ 75, LQ 48 for 8 <-> 16 kHz), and every held millisecond is added
    to the turn's latency.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._fir: IntegerResampler | None = None
        self._rs = None
        if src_rate != dst_rate:
            high, low = max(src_rate, dst_rate), min(src_rate, dst_rate)
            if high % low == 0:
                self._fir = IntegerResampler(src_rate, dst_rate)
            else:
                self._rs = soxr.ResampleStream(src_rate, dst_rate, 1, dtype="int16",
                                               quality="VHQ")

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        if self._fir is not None:
            return self._fir.process(samples, last=last).tobytes()
        if self._rs is None:
            return pcm
        return np.asarray(self._rs.resample_chunk(samples, last=last), dtype="<i2").tobytes()


class Framer:
    """Re-cuts a byte stream of PCM16 into fixed-size frames (tolerates any chunking)."""

    def __init__(self, frame_size: int) -> None:
        if frame_size <= 0 or frame_size % 2:
            raise ValueError("frame size must be a positive even number of bytes")
        self.frame_size = frame_size
        self._buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buf += data
        n = len(self._buf) // self.frame_size
        size = self.frame_size
        frames = [bytes(self._buf[i * size : (i + 1) * size]) for i in range(n)]
        del self._buf[: n * self.frame_size]
        return frames

    def flush(self) -> bytes:
        """The incomplete remainder, padded with silence to a full frame (or b'')."""
        if not self._buf:
            return b""
        out = bytes(self._buf) + b"\x00" * (self.frame_size - len(self._buf))
        self._buf.clear()
        return out


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of a PCM16 buffer in dBFS (-inf for digital silence)."""
    if len(pcm) < 2:
        return float("-inf")
    x = pcm16_to_float(pcm[: len(pcm) - len(pcm) % 2])
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
