"""OpenAI speech synthesis (or any compatible /v1/audio/speech endpoint), streamed.

response_format="pcm" is raw 24 kHz PCM16 LE mono with no header, so chunks can be yielded
as they arrive; HTTP chunk boundaries ignore sample boundaries, so an odd trailing byte is
carried into the next chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import openai

from voxbus_common.cloud_speech import (
    OpenAIAudioError,
    describe_openai_error,
    openai_client_settings,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000  # fixed by the API for response_format="pcm"


def whole_samples(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut byte chunks so each holds whole 16-bit samples; a final odd byte is dropped."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = len(data) - len(data) % 2
        carry = data[cut:]
        if cut:
            yield data[:cut]
    if carry:
        log.warning("dropping a trailing odd byte of PCM16")


class OpenAITextToSpeech:
    """TextToSpeech over /v1/audio/speech with response_format="pcm"."""

    sample_rate = SAMPLE_RATE

    def __init__(self, base_url: str = "", api_key: str = "", model: str = "gpt-4o-mini-tts",
                 voice: str = "alloy", *, timeout_s: float = 30.0) -> None:
        self._base_url, key = openai_client_settings("VOXBUS_TTS_PROVIDER", base_url, api_key)
        self._model = model
        self._voice = voice
        self.name = f"openai-{model}-{voice}"
        # one retry at most: a caller is waiting, a slow retry chain is worse than an error
        self._client = openai.OpenAI(base_url=self._base_url, api_key=key,
                                     timeout=timeout_s, max_retries=1)
        log.info("openai tts configured", extra={"base_url": self._base_url, "model": model})

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return
        try:
            with self._client.audio.speech.with_streaming_response.create(
                model=self._model, voice=self._voice, input=text, response_format="pcm",
            ) as response:
                yield from whole_samples(response.iter_bytes())
        except openai.OpenAIError as exc:
            raise OpenAIAudioError(describe_openai_error("speech synthesis", self._base_url, exc)) \
                from exc
