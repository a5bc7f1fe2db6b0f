"""Test doubles (only under tests/): deterministic providers for unit tests."""

from __future__ import annotations

import numpy as np

from voxbus_common.audio import float_to_pcm16


class EnergyVad:
    """VoiceActivityDetector fake: 'speech' is any window louder than -30 dBFS."""

    def __init__(self, sample_rate: int = 16000, frame_samples: int = 512) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.resets = 0

    def speech_probability(self, frame: bytes) -> float:
        x = np.frombuffer(frame, dtype="<i2").astype(np.float64) / 32768.0
        rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
        return 1.0 if rms > 0.03 else 0.0

    def reset(self) -> None:
        self.resets += 1


def tone(ms: int, rate: int = 16000, freq: float = 220.0, amp: float = 0.3) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return float_to_pcm16(amp * np.sin(2 * np.pi * freq * t))


def silence(ms: int, rate: int = 16000) -> bytes:
    return b"\x00\x00" * (rate * ms // 1000)
