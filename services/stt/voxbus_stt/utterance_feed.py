"""The recognition stream of the utterance being spoken, fed from the endpointer.

A stream opens when the endpointer confirms speech (its pre-roll included), gets each new
piece of the utterance's audio as frames arrive (`speaking` unless the caller pauses), and
is finished at the endpoint, where its last audio (the hangover) is pushed first. The
session (session.py) owns the policy around it: when to ask `pause()`, the order of finals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from voxbus_common.providers import Recognition, RecognitionStream, StreamingSpeechToText
from voxbus_stt.endpointer import Endpointer, SpeechEnded

log = logging.getLogger(__name__)


@dataclass
class _Open:
    utterance_id: int
    stream: RecognitionStream
    pushed: int  # bytes of the utterance's audio given to the stream
    origin_ms: int  # call-audio time of its first byte (word timings)


class UtteranceFeed:
    def __init__(self, stt: StreamingSpeechToText, endpointer: Endpointer,
                 on_interim: Callable[[int, str], None]) -> None:
        self.stt = stt
        self.endpointer = endpointer
        self.sample_rate = endpointer.vad.sample_rate
        self.on_interim = on_interim  # (utterance id, text so far)
        self._open: _Open | None = None
        self._finishing: set[asyncio.Task[Recognition]] = set()

    def open(self, utterance_id: int) -> None:
        """A stream for the utterance that just started; a failure is logged, and the final
        tries once more on the whole utterance."""
        self.drop()
        try:
            stream = self.stt.open_stream(
                self.sample_rate, lambda text: self.on_interim(utterance_id, text))
        except Exception:
            log.exception("recognition stream could not be opened")
            return
        self._open = _Open(utterance_id, stream, 0, self.endpointer.speech_origin_ms)

    def feed(self) -> None:
        """Hand the utterance's new audio to its stream."""
        ep, now = self.endpointer, self._open
        if now is None or not ep.in_speech or now.utterance_id != ep.utterance_id:
            return
        audio = ep.audio_since(now.pushed)
        if audio:
            now.stream.push(audio, ep.silence_ms == 0)
            now.pushed += len(audio)

    def pause(self) -> asyncio.Task[str] | None:
        """The text so far, asked for because the caller paused (None: no stream)."""
        return asyncio.create_task(self._open.stream.pause()) if self._open else None

    def finish(self, end: SpeechEnded) -> tuple[asyncio.Task[Recognition], int]:
        """The utterance ended: its final text, asked for now (a streaming provider has
        nearly all of it already), and the call-audio time its word timings count from."""
        now, self._open = self._open, None
        if now is None or now.utterance_id != end.utterance_id:
            if now is not None:
                now.stream.cancel()
            origin = max(0, end.start_ms - self.endpointer.cfg.pre_roll_ms)
            return self._track(self._recognize_alone(end.pcm)), origin
        if len(end.pcm) > now.pushed:
            now.stream.push(end.pcm[now.pushed:], False)
        return self._track(now.stream.finish()), now.origin_ms

    def drop(self) -> None:
        """Drop the open stream without a result."""
        if self._open is not None:
            self._open.stream.cancel()
            self._open = None

    def cancel_all(self) -> None:
        """Handover: the open stream and the finals not yet out are another worker's."""
        self.drop()
        for task in self._finishing:
            task.cancel()

    def _track(self, work: Coroutine[Any, Any, Recognition]) -> asyncio.Task[Recognition]:
        task = asyncio.create_task(work)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return task

    async def _recognize_alone(self, pcm: bytes) -> Recognition:
        stream = self.stt.open_stream(self.sample_rate, lambda _text: None)
        stream.push(pcm, True)
        return await stream.finish()
