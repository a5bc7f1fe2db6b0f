"""A batch provider (Whisper) behind the streaming interface.

The stream keeps the utterance's audio and decodes all of it: for an interim every
`interim_ms` of new speech (never while the caller pauses: a pause may be the endpoint, the
CPU goes to the final), once when the caller pauses (a speculative final, also read for the
turn cues), and at the end, where the pause's decode is reused when only silence followed
it. That hides the decode behind the end-of-turn silence: the endpoint adds only silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from voxbus_common.metrics import STT_DECODE
from voxbus_common.providers import (
    Recognition,
    SpeechToText,
    StreamingSpeechToText,
    SttCapabilities,
)

log = logging.getLogger(__name__)


def as_streaming(stt: SpeechToText | StreamingSpeechToText, pool: Executor,
                 interim_ms: int) -> StreamingSpeechToText:
    """The provider itself if it streams, else the batch one behind `BatchStreaming`."""
    if isinstance(stt, StreamingSpeechToText):
        return stt
    return BatchStreaming(stt, pool, interim_ms)


class BatchStreaming:
    """StreamingSpeechToText over a batch SpeechToText (LiveKit's StreamAdapter, with the
    session's own endpointer instead of a second VAD)."""

    def __init__(self, stt: SpeechToText, pool: Executor, interim_ms: int) -> None:
        self.stt = stt
        self.name = stt.name
        self.pool = pool
        self.interim_ms = interim_ms
        self.capabilities = SttCapabilities(streaming=False, interim_results=interim_ms > 0)

    def open_stream(self, sample_rate: int,
                    on_interim: Callable[[str], None]) -> BatchStream:
        return BatchStream(self.stt, self.pool, sample_rate, self.interim_ms, on_interim)


class BatchStream:
    """One utterance, decoded whole as often as the session needs its text."""

    def __init__(self, stt: SpeechToText, pool: Executor, sample_rate: int, interim_ms: int,
                 on_interim: Callable[[str], None]) -> None:
        self._stt = stt
        self._pool = pool
        self._rate = sample_rate
        self._interim_bytes = interim_ms * sample_rate * 2 // 1000
        self._on_interim = on_interim
        self._audio = bytearray()
        self._spoken = 0  # bytes up to the end of the last voiced push
        self._next_interim = 0  # set at the first push: an interim after `interim_ms` more
        self._interim: asyncio.Task[None] | None = None
        self._paused: tuple[int, asyncio.Future[str]] | None = None  # (spoken, its decode)
        self._done = False

    def push(self, pcm: bytes, speaking: bool) -> None:
        if not self._audio:
            self._next_interim = len(pcm) + self._interim_bytes
        self._audio += pcm
        if not speaking or self._done:
            return
        self._spoken = len(self._audio)
        if (self._interim_bytes and self._spoken >= self._next_interim
                and (self._interim is None or self._interim.done())):
            self._next_interim = self._spoken + self._interim_bytes
            self._interim = asyncio.create_task(self._report(bytes(self._audio)))

    async def _report(self, pcm: bytes) -> None:
        try:
            text = await self._decode(pcm)
        except Exception:
            log.exception("partial transcription failed")
            return
        if text and not self._done:
            self._on_interim(text)

    async def pause(self) -> str:
        if self._paused is None or self._paused[0] != self._spoken:
            self._drop_paused()
            decode = asyncio.ensure_future(self._decode(bytes(self._audio)))
            decode.add_done_callback(_retrieved)  # a dropped decode's error is no warning
            self._paused = (self._spoken, decode)
        return await asyncio.shield(self._paused[1])

    async def finish(self) -> Recognition:
        self._done = True
        if self._paused is not None and self._paused[0] == self._spoken:
            return Recognition(await self._paused[1])  # only silence came after the pause
        self._drop_paused()
        return Recognition(await self._decode(bytes(self._audio)))

    def cancel(self) -> None:
        self._done = True
        self._drop_paused()
        if self._interim is not None:
            self._interim.cancel()

    def _drop_paused(self) -> None:
        if self._paused is not None:
            self._paused[1].cancel()
            self._paused = None

    async def _decode(self, pcm: bytes) -> str:
        with STT_DECODE.labels("utterance").time():
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self._stt.transcribe, pcm, self._rate)


def _retrieved(future: asyncio.Future[str]) -> None:
    if not future.cancelled():
        future.exception()
