"""Azure Speech TTS: raw 24 kHz PCM16 streamed from the synthesizer's `synthesizing` events.

Each event carries the audio produced since the last one, so the first chunk is yielded
while the service is still synthesizing. The events arrive on SDK threads; `AudioChunks`
bridges them to the blocking generator the TextToSpeech protocol asks for, and takes
anything shaped like the SDK's events, so it is unit-tested without a network.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import azure.cognitiveservices.speech as speechsdk  # type: ignore[import-untyped]

from voxbus_common.cloud_speech import (
    AZURE_AUTH_CODES,
    AzureSpeechError,
    require_azure_credentials,
    sdk_name,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000  # neural voices are 24 kHz natively: no resampling at the service


def synthesis_error(details: Any) -> AzureSpeechError:
    """SpeechSynthesisCancellationDetails (reason, error_code, error_details) as one error."""
    code = sdk_name(getattr(details, "error_code", "NoError"))
    message = f"Azure Speech canceled the synthesis: {sdk_name(details.reason)}"
    if code != "NoError":
        message += f" ({code})"
    if details.error_details:
        message += f": {details.error_details}"
    if code in AZURE_AUTH_CODES:
        message += " - check AZURE_SPEECH_KEY and AZURE_SPEECH_REGION"
    return AzureSpeechError(message)


def build_ssml(text: str, voice: str, language: str) -> str:
    """SSML for one clause; the text is escaped, so '<', '&' in LLM output stay words."""
    return ('<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" '
            f"xml:lang={quoteattr(language)}><voice name={quoteattr(voice)}>"
            f"{escape(text)}</voice></speak>")


class AudioChunks:
    """A queue fed by synthesizer events and drained by `chunks()` in the caller's thread.

    The SDK swallows handler exceptions, so handlers only enqueue; a cancellation becomes an
    error raised by `chunks()`. Yielded chunks always hold whole 16-bit samples."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | AzureSpeechError | None] = queue.Queue()
        self.finished = False  # the service ended the synthesis (completed or canceled)

    def on_synthesizing(self, event: Any) -> None:
        data = event.result.audio_data
        if data:
            self._queue.put(bytes(data))

    def on_completed(self, event: Any) -> None:
        self._queue.put(None)

    def on_canceled(self, event: Any) -> None:
        self._queue.put(synthesis_error(event.result.cancellation_details))

    def chunks(self, idle_timeout_s: float) -> Iterator[bytes]:
        """Audio as it arrives; AzureSpeechError on cancellation or `idle_timeout_s` silence."""
        carry = b""
        while True:
            try:
                item = self._queue.get(timeout=idle_timeout_s)
            except queue.Empty:
                raise AzureSpeechError(
                    f"Azure Speech sent no audio for {idle_timeout_s:.0f} s") from None
            if item is None:
                self.finished = True
                return  # a trailing odd byte cannot be a sample: dropped
            if isinstance(item, AzureSpeechError):
                self.finished = True
                raise item
            data = carry + item
            cut = len(data) - len(data) % 2
            carry = data[cut:]
            if cut:
                yield data[:cut]


class AzureTextToSpeech:
    """TextToSpeech over Azure Speech neural voices (Raw24Khz16BitMonoPcm)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, key: str, region: str, voice: str = "en-US-JennyNeural",
                 language: str = "en-US", *, endpoint: str = "",
                 idle_timeout_s: float = 15.0) -> None:
        require_azure_credentials("VOXBUS_TTS_PROVIDER", key, region)
        if endpoint:  # e.g. a local Speech container
            config = speechsdk.SpeechConfig(subscription=key, endpoint=endpoint)
        else:
            config = speechsdk.SpeechConfig(subscription=key, region=region)
        config.set_speech_synthesis_output_format(
            speechsdk.SpeechSynthesisOutputFormat.Raw24Khz16BitMonoPcm)
        self._config: Any = config
        self._voice = voice
        self._language = language
        self._idle_timeout_s = idle_timeout_s
        self.name = f"azure-{voice}"
        log.info("azure tts configured", extra={"region": region, "voice": voice})

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return
        # audio_config=None: no speaker, the audio reaches us only through the events
        synthesizer = speechsdk.SpeechSynthesizer(speech_config=self._config, audio_config=None)
        audio = AudioChunks()
        synthesizer.synthesizing.connect(audio.on_synthesizing)
        synthesizer.synthesis_completed.connect(audio.on_completed)
        synthesizer.synthesis_canceled.connect(audio.on_canceled)
        future = synthesizer.speak_ssml_async(build_ssml(text, self._voice, self._language))
        try:
            yield from audio.chunks(self._idle_timeout_s)
        finally:
            try:
                if not audio.finished:  # consumer stopped early (barge-in) or service stalled
                    synthesizer.stop_speaking()
                future.get()  # releases the SDK's handle; returns at once once ended
            except Exception:  # never mask the error (or early close) that brought us here
                log.warning("azure synthesizer cleanup failed", exc_info=True)
            # release in this thread, not wherever a traceback holding this frame is dropped
            del synthesizer, future
