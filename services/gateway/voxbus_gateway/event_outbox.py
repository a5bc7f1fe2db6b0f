"""A call's control events go out in order without holding up the conversation.

Publishing an event waits until its stream has stored it: 1-2 ms on one server, 3-4 ms
with 3 replicas, seconds while the stream elects a leader. A turn must not wait for that
(the LLM request would go out late, a barge-in's clear would reach the caller late). The
outbox publishes each event in a task of its own, strictly after the one before it (the
memory recorder reads the stream in order); only whoever needs an event stored (the
call's start, its end, an operator's note) waits for it. Each task runs in the context of
the code that made the event, so its trace and log fields are that turn's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from voxbus.v1.call_pb2 import CallEvent

log = logging.getLogger(__name__)


class EventOutbox:
    def __init__(self, publish: Callable[[CallEvent], Awaitable[None]]) -> None:
        self._publish = publish
        self._last: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def put(self, event: CallEvent) -> asyncio.Task[None]:
        """Publish `event` after every event put before it; await the task to know it is
        stored (it raises what the publish raised)."""
        task = asyncio.create_task(self._after(self._last, event))
        self._last = task
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    def put_unwaited(self, event: CallEvent) -> None:
        """Publish `event` in order; a failure is logged (nobody waits for it)."""
        self.put(event).add_done_callback(_report)

    async def _after(self, previous: asyncio.Task[None] | None, event: CallEvent) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})  # (its failure is its waiter's business)
        await self._publish(event)

    async def flush(self) -> None:
        """Until every event put so far is stored (or failed: see `put`)."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def close(self) -> None:
        """The call is over: events not yet stored are given up."""
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(set(self._pending))


def _report(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("a call event was not stored: %s: %s", type(exc).__name__, exc)
