"""Azure Speech STT: one recognition session per endpointed utterance, over a push stream.

Continuous recognition rather than recognize_once: Azure ends a phrase at its own silence
detection, so an utterance with a pause inside would lose its tail with recognize_once. The
stream is closed after the utterance, so the session ends by itself (EndOfStream).

The SDK-to-voxbus translation (result reasons, cancellations, partial text) lives in small
functions and `UtteranceCollector`, which take anything shaped like the SDK's results and
events, so they are unit-tested without a network or real SDK objects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import azure.cognitiveservices.speech as speechsdk  # type: ignore[import-untyped]

from voxbus_common.cloud_speech import (
    AZURE_AUTH_CODES,
    AzureSpeechError,
    require_azure_credentials,
    sdk_name,
)

log = logging.getLogger(__name__)

# cancellations that are the normal end of a session, not failures
_NORMAL_END = ("EndOfStream", "CancelledByUser")


def cancellation_error(details: Any) -> AzureSpeechError:
    """Cancellation details (recognition: `.code`, synthesis: `.error_code`) as one error."""
    code = getattr(details, "code", None) or getattr(details, "error_code", None)
    message = f"Azure Speech canceled the request: {sdk_name(details.reason)}"
    if code is not None and sdk_name(code) != "NoError":
        message += f" ({sdk_name(code)})"
    if details.error_details:
        message += f": {details.error_details}"
    if code is not None and sdk_name(code) in AZURE_AUTH_CODES:
        message += " - check AZURE_SPEECH_KEY and AZURE_SPEECH_REGION"
    return AzureSpeechError(message)


def is_normal_end(details: Any) -> bool:
    """True for the cancellation that closing the push stream causes."""
    return sdk_name(details.reason) in _NORMAL_END


def result_text(result: Any) -> str:
    """A final recognition result as voxbus text: speech -> text, no match -> "", canceled
    -> AzureSpeechError. Other reasons carry no final text."""
    reason = result.reason
    if reason == speechsdk.ResultReason.RecognizedSpeech:
        return str(result.text).strip()
    if reason == speechsdk.ResultReason.NoMatch:
        return ""
    if reason == speechsdk.ResultReason.Canceled:
        raise cancellation_error(result.cancellation_details)
    log.debug("ignoring azure result", extra={"reason": sdk_name(reason)})
    return ""


def join_phrases(phrases: list[str]) -> str:
    return " ".join(p for p in phrases if p)


class UtteranceCollector:
    """Gathers one session's events into the utterance text.

    The SDK calls these handlers on its own threads and swallows their exceptions, so they
    never raise: errors are kept and re-raised by `text()` in the caller's thread."""

    def __init__(self, on_partial: Callable[[str], None] | None = None) -> None:
        self.phrases: list[str] = []
        self.error: AzureSpeechError | None = None
        self.done = threading.Event()
        self._on_partial = on_partial
        self._lock = threading.Lock()

    def on_recognizing(self, event: Any) -> None:
        """A hypothesis for the current phrase: report everything heard so far."""
        if self._on_partial is None or not event.result.text:
            return
        with self._lock:
            partial = join_phrases([*self.phrases, str(event.result.text).strip()])
        try:
            self._on_partial(partial)
        except Exception:
            log.exception("partial callback failed")

    def on_recognized(self, event: Any) -> None:
        try:
            text = result_text(event.result)
        except AzureSpeechError as exc:
            self._fail(exc)
            return
        if text:
            with self._lock:
                self.phrases.append(text)

    def on_canceled(self, event: Any) -> None:
        details = event.cancellation_details
        if is_normal_end(details):
            self.done.set()
        else:
            self._fail(cancellation_error(details))

    def on_session_stopped(self, event: Any) -> None:
        self.done.set()

    def _fail(self, error: AzureSpeechError) -> None:
        with self._lock:
            self.error = self.error or error
        self.done.set()

    def text(self) -> str:
        """The final utterance text, or the session's error."""
        with self._lock:
            if self.error is not None:
                raise self.error
            return join_phrases(self.phrases)


def result_timeout_s(n_bytes: int, sample_rate: int) -> float:
    """How long to wait for a session to end: generous for the service's real-time pace."""
    return 10.0 + 2.0 * n_bytes / (2 * sample_rate)


class AzureSpeechToText:
    """SpeechToText over Azure Speech; `on_partial` (optional) receives hypotheses as the
    service produces them, though voxbus itself only uses the final text."""

    name = "azure-speech"

    def __init__(self, key: str, region: str, language: str = "en-US", *,
                 endpoint: str = "",
                 on_partial: Callable[[str], None] | None = None) -> None:
        require_azure_credentials("VOXBUS_STT_PROVIDER", key, region)
        if endpoint:  # e.g. a local Speech container: ws://host:5000
            config = speechsdk.SpeechConfig(subscription=key, endpoint=endpoint)
        else:
            config = speechsdk.SpeechConfig(subscription=key, region=region)
        config.speech_recognition_language = language
        self._config: Any = config
        self.on_partial = on_partial
        log.info("azure stt configured", extra={"region": region, "language": language})

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        if not pcm:
            return ""
        fmt = speechsdk.audio.AudioStreamFormat(
            samples_per_second=sample_rate, bits_per_sample=16, channels=1)
        stream = speechsdk.audio.PushAudioInputStream(stream_format=fmt)
        recognizer = speechsdk.SpeechRecognizer(
            speech_config=self._config, audio_config=speechsdk.audio.AudioConfig(stream=stream))
        collector = UtteranceCollector(self.on_partial)
        recognizer.recognizing.connect(collector.on_recognizing)
        recognizer.recognized.connect(collector.on_recognized)
        recognizer.canceled.connect(collector.on_canceled)
        recognizer.session_stopped.connect(collector.on_session_stopped)
        timeout = result_timeout_s(len(pcm), sample_rate)
        recognizer.start_continuous_recognition()
        try:
            stream.write(pcm)
            stream.close()
            if not collector.done.wait(timeout):
                raise AzureSpeechError(f"Azure Speech gave no result within {timeout:.0f} s")
        finally:
            # Stop only a session that has not ended: stopping an ended one costs ~1 s, and
            # ~10 s more when the recognizer is released (measured after a connection error).
            if not collector.done.is_set():
                recognizer.stop_continuous_recognition()
            # Release here, in the worker thread: a traceback holding this frame would
            # otherwise release it (a blocking native call) wherever the error is dropped.
            del recognizer, stream
        return collector.text()
