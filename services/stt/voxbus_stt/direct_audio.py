"""A second way in for caller audio while the audio stream cannot deliver it.

A session reads the call's frames through an ordered JetStream consumer: that is what lets a
replacement worker replay them. In a clustered NATS the stream delivers nothing while it
elects a new leader (4-9 s after its leader dies; nats-server's raft timeouts are fixed), and
an ordered consumer cannot be made again until the meta leader answers. The gateway's frames
still cross the cluster as plain NATS messages all that time. So when the stream has said
nothing for `stall_s`, the session also subscribes to the subject directly (core NATS): the
frames from both ways are put in order by their numbers and read once (frame_order.py), and
the frames published before the direct subscription existed are asked again from the gateway
(frame_repair.py). Once the stream delivers a frame at least as new as the newest one that came
directly, it has caught up and the direct subscription is dropped.

Costs nothing while the stream flows: one timer per session, no second copy of each frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from voxbus_common.direct_work import Unsubscribable

log = logging.getLogger(__name__)

STALL_S = 0.3  # no frame from the stream for this long: read the subject directly too


Subscribe = Callable[[Callable[[Msg], Awaitable[None]]], Awaitable[Unsubscribable]]


class DirectAudio:
    """Watches one session's audio stream and reads the subject directly while it stalls."""

    def __init__(self, subscribe: Subscribe, handler: Callable[[Msg], Awaitable[None]],
                 stall_s: float = STALL_S, backlog: Callable[[], int] = lambda: 0) -> None:
        self.subscribe = subscribe  # a core subscription to the call's audio subject
        self.handler = handler
        self.stall_s = stall_s
        self.backlog = backlog  # the stream's frames delivered but not read yet
        self.last_stream_frame = time.monotonic()
        self.newest_direct = 0  # the newest frame number that came directly
        self._sub: Unsubscribable | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dropping: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._sub is not None

    def start(self) -> None:
        self.last_stream_frame = time.monotonic()
        self._task = asyncio.create_task(self._watch())

    def from_stream(self, seq: int, now: float | None = None) -> None:
        """A frame came through the stream."""
        self.last_stream_frame = time.monotonic() if now is None else now
        if self._sub is not None and seq >= self.newest_direct:
            sub, self._sub = self._sub, None
            self._dropping = asyncio.create_task(self._drop(sub, "the audio stream caught up"))

    def from_direct(self, seq: int) -> None:
        """A frame came through the direct subscription."""
        self.newest_direct = max(self.newest_direct, seq)

    async def _watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.stall_s / 2)
            await self.check(time.monotonic())

    async def check(self, now: float) -> None:
        """Read the subject directly if the stream has been silent for `stall_s`. Frames
        delivered and waiting to be read are no stall: this worker is behind (a saturated
        replica, a take-over's replay), and a direct subscription plus the gateway sending
        the gap again would only add to its work."""
        if self._sub is None and not self._closing and now - self.last_stream_frame >= self.stall_s:
            if self.backlog():
                return
            await self._take(now)

    async def _take(self, now: float) -> None:
        self.newest_direct = 0
        try:
            self._sub = await self.subscribe(self.handler)
        except Exception as exc:  # (no connection just now: the next check tries again)
            log.warning("direct audio subscription failed: %s", exc)
            return
        log.info("audio stream silent for %.1f s: reading caller frames directly",
                 now - self.last_stream_frame)

    @staticmethod
    async def _drop(sub: Unsubscribable | None, why: str) -> None:
        if sub is None:
            return
        with contextlib.suppress(Exception):  # (the connection may be gone)
            await sub.unsubscribe()
        log.info("direct audio subscription dropped: %s", why)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        sub, self._sub = self._sub, None
        await self._drop(sub, "session closed")
