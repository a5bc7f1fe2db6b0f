"""Is the bus usable? A gateway asks JetStream once a second (an account-info request, which
only a cluster with a meta leader answers) and calls the bus *lost* once it has failed for a
grace period: longer than the leader election that follows losing one node, shorter than a
caller's patience with silence.

While the bus is lost the gateway refuses new calls (503, app.py) and ends its live ones with
that reason: a turn cannot be saved, queued or answered without quorum, and a caller is
better told so than left in silence. When the probe answers again, calls are taken again.
The policy is `QuorumState`, a pure state machine; `QuorumWatch` runs it against the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOST_REASON = "the message bus lost quorum; please call again shortly"


@dataclass
class QuorumState:
    """Failing probes for `grace_s` in a row = lost; one answered probe = back."""

    grace_s: float
    failing_since: float | None = None
    lost: bool = False

    def probe_failed(self, now: float) -> bool:
        """Record a failed probe; True exactly when this one makes the bus lost."""
        if self.failing_since is None:
            self.failing_since = now
        if not self.lost and now - self.failing_since >= self.grace_s:
            self.lost = True
            return True
        return False

    def probe_answered(self) -> bool:
        """Record an answered probe; True exactly when this one ends a loss."""
        was_lost = self.lost
        self.failing_since = None
        self.lost = False
        return was_lost


class QuorumWatch:
    def __init__(self, probe: Callable[[], Awaitable[object]], grace_s: float,
                 on_lost: Callable[[str], Awaitable[None]], every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.probe = probe
        self.state = QuorumState(grace_s)
        self.on_lost = on_lost
        self.every_s = every_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def lost(self) -> bool:
        return self.state.lost

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> None:
        """One probe and its consequence (the loop's step)."""
        try:
            await asyncio.wait_for(self.probe(), timeout=max(0.5, self.every_s * 2))
        except Exception as exc:
            if self.state.probe_failed(self.clock()):
                log.error("bus lost: JetStream has not answered for %.0f s (%s); refusing "
                          "new calls and ending live ones", self.state.grace_s,
                          type(exc).__name__ or exc)
                await self.on_lost(LOST_REASON)
            return
        if self.state.probe_answered():
            log.warning("bus back: JetStream answers again; taking calls")

    async def _run(self) -> None:
        while True:
            started = self.clock()
            try:
                await self.check()
            except Exception:  # a failing hang-up must not stop the watch
                log.exception("bus quorum check failed")
            await asyncio.sleep(max(0.0, self.every_s - (self.clock() - started)))
