"""A session's frames in spoken order, with the frames the audio stream missed asked again.

FrameOrder (frame_order.py) decides what is missing; this asks the gateway for it
(`ask`, an AudioResend), waits a little for it to come, asks again a few times, then goes on
without it and reports the loss (an error log and voxbus_errors_total{kind=
"caller_frames_lost"}): never silent.
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

    async def push(self, frame: AudioFrame, stream_seq: int) -> None:
        for ready, seq in self.order.push(frame.meta.seq, (frame, stream_seq)):
            await self.process(ready, seq)
        self._check()

    def drain_to(self, last_seq: int) -> None:
        """The caller is gone after frame `last_seq`: anything missing up to it is asked."""
        self._last_seq = last_seq
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
        log.error("%d caller frames (%d ms) were lost: not in the audio stream, and the "
                  "gateway did not send them again", lost, lost * 20)
        for frame, seq in ready:
            await self.process(frame, seq)
        self._check()

    def stop(self) -> None:
        self.closing = True
        if self._task is not None:
            self._task.cancel()
