"""OpenAI audio transcription (or any compatible /v1/audio/transcriptions endpoint).

The endpoint takes files, not raw PCM, so each utterance is wrapped into an in-memory WAV.
The synchronous client is enough: services call transcribe() from a worker thread.
"""

from __future__ import annotations

import io
import logging
import wave

import openai

from voxbus_common.cloud_speech import (
    OpenAIAudioError,
    describe_openai_error,
    openai_client_settings,
)

log = logging.getLogger(__name__)


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """PCM16 LE mono as a complete WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm[: len(pcm) - len(pcm) % 2])
    return out.getvalue()


class OpenAISpeechToText:
    """SpeechToText over /v1/audio/transcriptions (json response: the text field)."""

    def __init__(self, base_url: str = "", api_key: str = "",
                 model: str = "gpt-4o-mini-transcribe", *, timeout_s: float = 30.0) -> None:
        self._base_url, key = openai_client_settings("VOXBUS_STT_PROVIDER", base_url, api_key)
        self._model = model
        self.name = f"openai-{model}"
        # one retry at most: a caller is waiting, a slow retry chain is worse than an error
        self._client = openai.OpenAI(base_url=self._base_url, api_key=key,
                                     timeout=timeout_s, max_retries=1)
        log.info("openai stt configured", extra={"base_url": self._base_url, "model": model})

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        if len(pcm) < 2:
            return ""
        try:
            result = self._client.audio.transcriptions.create(
                file=("utterance.wav", wav_bytes(pcm, sample_rate), "audio/wav"),
                model=self._model,
                response_format="json",
            )
        except openai.OpenAIError as exc:
            raise OpenAIAudioError(
                describe_openai_error("transcription", self._base_url, exc)) from exc
        return result.text.strip()
