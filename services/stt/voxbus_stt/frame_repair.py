"""A session's frames in spoken order, with the frames the audio stream missed asked again.

FrameOrder (frame_order.py) decides what is missing; this asks the gateway for it
(`ask`, an AudioResend), waits a little for it to come, asks again a few times, then goes on
without it and reports the loss (an error log and voxbus_errors_total{kind=
"caller_frames_lost"}): never silent. Frames read directly wait for the stream's first frame
(`ANCHOR_WAIT_S` at most, e.g. an election at the session's start) to say where it begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from voxbus.v1.audio_pb2 import AudioFrame
from voxbus_common.metrics import ERRORS
from voxbus_stt.frame_order import FrameOrder, Gap

log = logging.getLogger(__name__)

ASKS = 5  # asks for missing caller frames before going on without them
WAIT_S = 1.0  # for the frames to come after each ask
ANCHOR_WAIT_S = 3.0  # direct frames held this long with no stream frame: start from them

Process = Callable[[AudioFrame, int], Awaitable[None]]


class FrameRepair:
    def __init__(self, ask: Callable[[Gap], Awaitable[None]], process: Process) -> None:
        self.ask = ask
        self.process = process  # (frame, stream sequence), in the caller's order
        self.order: FrameOrder[tuple[AudioFrame, int]] = FrameOrder()
        self.closing = False
        self._last_seq = 0  # the call's last frame, once it is gone
        self._filled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._anchor_wait: asyncio.Task[None] | None = None

    async def push(self, frame: AudioFrame, stream_seq: int) -> None:
        """A frame: `stream_seq` > 0 when it came through the audio stream (its position
        there), 0 when read straight off the subject."""
        ready = self.order.push(frame.meta.seq, (frame, stream_seq), anchor=stream_seq > 0)
        if not self.order.anchored and self._anchor_wait is None:
            self._anchor_wait = asyncio.create_task(self._wait_for_anchor(ANCHOR_WAIT_S))
        for item, seq in ready:
            await self.process(item, seq)
        self._check()

    async def _wait_for_anchor(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        await self._start_from_held()

    async def _start_from_held(self) -> None:
        if self.order.anchored or self.closing or not self.order.held:
            return
        ready = self.order.anchor_at_held()
        log.warning("the audio stream delivered no frame: recognition starts from the frames "
                    "read directly (what came before them is not replayed)")
        for item, seq in ready:
            await self.process(item, seq)
        self._check()

    async def drain_to(self, last_seq: int) -> None:
        """The caller is gone after frame `last_seq`: anything missing up to it is asked."""
        self._last_seq = last_seq
        await self._start_from_held()
        self._check()

    def missing(self) -> Gap | None:
        return self.order.want_up_to(self._last_seq) if self._last_seq else self.order.gap()

    def _check(self) -> None:
        if self.missing() is None:
            self._filled.set()
        elif self._task is None or self._task.done():
            self._filled.clear()
            self._task = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        for _ in range(ASKS):
            gap = self.missing()
            if gap is None or self.closing:
                return
            log.info("caller frames %d to %d missing from the audio stream: asking the gateway",
                     gap.first, gap.last)
            with contextlib.suppress(Exception):  # (asked again after the wait)
                await self.ask(gap)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._filled.wait(), WAIT_S)
        if self.missing() is None or self.closing:
            return
        ready, lost = self.order.give_up()
        ERRORS.labels("stt", "caller_frames_lost").inc(max(1, lost))
        log.error("%d caller frames were lost: not in the audio stream, and the gateway "
                  "did not send them again", lost)
        for frame, seq in ready:
            await self.process(frame, seq)
        self._check()

    def stop(self) -> None:
        self.closing = True
        for task in (self._task, self._anchor_wait):
            if task is not None:
                task.cancel()
