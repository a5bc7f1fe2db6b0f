"""Azure Speech STT, streaming: one recognition session per utterance, opened when the
caller starts speaking and fed over a push stream as the audio arrives, so the final text is
ready moments after the endpoint instead of after a whole upload and recognition.

Continuous recognition rather than recognize_once: Azure ends a phrase at its own silence
detection, so an utterance with a pause inside would lose its tail with recognize_once. The
stream is closed after the utterance, so the session ends by itself (EndOfStream). Word
timings come from the detailed output format (NBest[0].Words, offsets in 100 ns ticks).

The SDK-to-voxbus translation (result reasons, cancellations, partial text) lives in small
functions and `UtteranceCollector`, which take anything shaped like the SDK's results and
events, so they are unit-tested without a network or real SDK objects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import azure.cognitiveservices.speech as speechsdk  # type: ignore[import-untyped]

from voxbus_common.cloud_speech import (
    AZURE_AUTH_CODES,
    AzureSpeechError,
    require_azure_credentials,
    sdk_name,
)
from voxbus_common.providers import Recognition, SttCapabilities, Word

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
        self.words: list[Word] = []
        self.hypothesis = ""  # the phrase being recognized, not final yet
        self.error: AzureSpeechError | None = None
        self.done = threading.Event()
        self._on_partial = on_partial
        self._lock = threading.Lock()

    def on_recognizing(self, event: Any) -> None:
        """A hypothesis for the current phrase: report everything heard so far."""
        if not event.result.text:
            return
        with self._lock:
            self.hypothesis = str(event.result.text).strip()
            partial = join_phrases([*self.phrases, self.hypothesis])
        if self._on_partial is None:
            return
        try:
            self._on_partial(partial)
        except Exception:
            log.exception("partial callback failed")

    def on_recognized(self, event: Any) -> None:
        try:
            text = result_text(event.result)
        except AzureSpeechError as exc:
            self.fail(exc)
            return
        with self._lock:
            self.hypothesis = ""
            if text:
                self.phrases.append(text)
                self.words.extend(result_words(event.result))

    def on_canceled(self, event: Any) -> None:
        details = event.cancellation_details
        if is_normal_end(details):
            self.done.set()
        else:
            self.fail(cancellation_error(details))

    def on_session_stopped(self, event: Any) -> None:
        self.done.set()

    def fail(self, error: AzureSpeechError) -> None:
        with self._lock:
            self.error = self.error or error
        self.done.set()

    def text(self) -> str:
        """The final utterance text, or the session's error."""
        with self._lock:
            if self.error is not None:
                raise self.error
            return join_phrases(self.phrases)

    def so_far(self) -> str:
        """Everything heard so far, the phrase still being recognized included."""
        with self._lock:
            return join_phrases([*self.phrases, self.hypothesis])


TICKS_PER_MS = 10_000  # the SDK's offsets are in 100 ns ticks


def result_words(result: Any) -> list[Word]:
    """The words of a detailed-format result (NBest[0].Words), in ms from the stream's
    start; none when the result has no detailed JSON."""
    try:
        best = json.loads(result.json)["NBest"][0]
        return [Word(str(w["Word"]), int(w["Offset"]) // TICKS_PER_MS,
                     (int(w["Offset"]) + int(w["Duration"])) // TICKS_PER_MS)
                for w in best.get("Words", ())]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return []


def result_timeout_s(n_bytes: int, sample_rate: int) -> float:
    """How long to wait for a session to end: generous for the service's real-time pace."""
    return 10.0 + 2.0 * n_bytes / (2 * sample_rate)


class AzureSpeechToText:
    """StreamingSpeechToText over Azure Speech: interim hypotheses, word timings."""

    name = "azure-speech"
    capabilities = SttCapabilities(streaming=True, interim_results=True, word_timings=True)

    def __init__(self, key: str, region: str, language: str = "en-US", *,
                 endpoint: str = "", pool: Executor | None = None) -> None:
        require_azure_credentials("VOXBUS_STT_PROVIDER", key, region)
        if endpoint:  # e.g. a local Speech container: ws://host:5000
            config = speechsdk.SpeechConfig(subscription=key, endpoint=endpoint)
        else:
            config = speechsdk.SpeechConfig(subscription=key, region=region)
        config.speech_recognition_language = language
        config.request_word_level_timestamps()
        config.output_format = speechsdk.OutputFormat.Detailed
        self._config: Any = config
        # blocking SDK calls (waiting for the end, releasing a recognizer) run here
        self._pool = pool or ThreadPoolExecutor(8, thread_name_prefix="azure-stt")
        log.info("azure stt configured", extra={"region": region, "language": language})

    def open_stream(self, sample_rate: int,
                    on_interim: Callable[[str], None]) -> AzureRecognitionStream:
        return AzureRecognitionStream(self._config, sample_rate, on_interim, self._pool)


class AzureRecognitionStream:
    """One utterance's recognition session; the SDK connects while the caller speaks."""

    def __init__(self, config: Any, sample_rate: int, on_interim: Callable[[str], None],
                 pool: Executor) -> None:
        loop = asyncio.get_running_loop()

        def interim(text: str) -> None:  # (an SDK thread)
            if not loop.is_closed():
                loop.call_soon_threadsafe(on_interim, text)

        self._pool = pool
        self._rate = sample_rate
        self._bytes = 0
        self._odd = b""
        fmt = speechsdk.audio.AudioStreamFormat(
            samples_per_second=sample_rate, bits_per_sample=16, channels=1)
        self._stream: Any = speechsdk.audio.PushAudioInputStream(stream_format=fmt)
        self._recognizer: Any = speechsdk.SpeechRecognizer(
            speech_config=config, audio_config=speechsdk.audio.AudioConfig(stream=self._stream))
        self.collector = UtteranceCollector(interim)
        self._recognizer.recognizing.connect(self.collector.on_recognizing)
        self._recognizer.recognized.connect(self.collector.on_recognized)
        self._recognizer.canceled.connect(self.collector.on_canceled)
        self._recognizer.session_stopped.connect(self.collector.on_session_stopped)
        self._recognizer.start_continuous_recognition_async()  # (returns at once)
        self._closed = False

    def push(self, pcm: bytes, speaking: bool) -> None:
        if self._closed:
            return
        data = self._odd + pcm
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        if whole:
            self._stream.write(data[:whole])
            self._bytes += whole

    async def pause(self) -> str:
        return self.collector.so_far()

    async def finish(self) -> Recognition:
        self._close_input()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._wait_and_release)
        return Recognition(self.collector.text(), tuple(self.collector.words))

    def cancel(self) -> None:
        if not self._closed:
            self._close_input()
            self._pool.submit(self._release)

    def _close_input(self) -> None:
        self._closed = True
        self._stream.close()

    def _wait_and_release(self) -> None:
        timeout = result_timeout_s(self._bytes, self._rate)
        try:
            if not self.collector.done.wait(timeout):
                self.collector.fail(AzureSpeechError(
                    f"Azure Speech gave no result within {timeout:.0f} s"))
        finally:
            self._release()

    def _release(self) -> None:
        """Stop only a session that has not ended (stopping an ended one costs ~1 s, and
        ~10 s more when the recognizer is released, measured after a connection error);
        release it here, in a worker thread: it is a blocking native call."""
        if not self.collector.done.is_set():
            self._recognizer.stop_continuous_recognition()
        self._recognizer = None
        self._stream = None
