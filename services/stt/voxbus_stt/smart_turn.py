"""smart-turn v3.2: an audio end-of-turn model (Pipecat's, BSD-2-Clause, ONNX int8, 8.7 MB).

It hears the last 8 s of the caller's audio (speech plus the pause so far) and says how
likely the turn is complete, from prosody and words alike: "four one five ..." with a
level pitch is not done, "... for two people tonight." is. `make install` extracts the
model from the pinned pipecat-ai wheel (deploy/tools/fetch_smart_turn.py); Pipecat itself
is not a dependency. Features are our own (log_mel.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from voxbus_stt.log_mel import RATE, log_mel, window_audio

log = logging.getLogger(__name__)

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
WINDOW_S = 8.0


class EndOfTurnModelError(RuntimeError):
    """The model cannot be used; the message says why and what to do."""


def bundled_model_path() -> Path:
    """Where `make install` (and the STT image) put the model."""
    return Path(__file__).resolve().parent / "models" / MODEL_FILE


class SmartTurnDetector:
    """EndOfTurnDetector over smart-turn v3.2 (input_features [1, 80, 800] -> probability)."""

    name = "smart-turn-v3.2"
    window_s = WINDOW_S
    uses_text = False

    def __init__(self, model_path: str = "", threads: int = 1) -> None:
        path = Path(model_path) if model_path else bundled_model_path()
        if not path.is_file():
            raise EndOfTurnModelError(
                f"end-of-turn model {path} is missing: run `make install` (it extracts "
                "smart-turn from the pinned pipecat-ai wheel) or set VOXBUS_EOT_MODEL_PATH")
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, threads)
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            # one inference proves the file is the model we expect (shape, output)
            self._run(np.zeros(int(WINDOW_S * RATE), dtype=np.float32))
        except EndOfTurnModelError:
            raise
        except Exception as exc:  # a corrupt or foreign file: onnxruntime's own words
            raise EndOfTurnModelError(f"end-of-turn model {path} failed to load: {exc}"
                                      ) from None
        log.info("end-of-turn model loaded", extra={"model": str(path)})

    def completion_probability(self, pcm: bytes, sample_rate: int, text: str = "") -> float:
        if sample_rate != RATE:
            raise ValueError(f"smart-turn expects {RATE} Hz audio, got {sample_rate}")
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
        samples = np.nan_to_num(samples / 32768.0, nan=0.0, posinf=0.0, neginf=0.0)
        return self._run(window_audio(samples, WINDOW_S))  # (a session runs concurrently)

    def _run(self, window: np.ndarray) -> float:
        features = log_mel(window)[np.newaxis]
        out = self._session.run(None, {self._input: features})[0]
        value = float(np.asarray(out).reshape(-1)[0])
        if not np.isfinite(value):
            return 0.0  # (never seen; an undecidable answer holds the turn, never cuts it)
        return min(1.0, max(0.0, value))
