"""A second way in for work items while a work queue cannot deliver them.

Work items (an LLM turn, a clause to speak, a call to transcribe) wait in a work-queue stream
and reach one replica through a durable pull consumer. In a clustered NATS that consumer
answers nothing while it elects a new leader: 4-9 s after its leader's node dies
(nats-server's raft timeouts are fixed), and a turn in flight waits all that time. The
items themselves are still published as plain NATS messages on the work subject. So while a
replica's fetches fail, it also reads the subject directly in a queue group (one replica gets
each item) and works what comes, until a fetch delivers or, the queue being idle, its
consumer answers an info request (pull_worker.py). The stream keeps its own copy (the
publisher retries until the stream stores it); once the queue delivers again, that copy
must not be worked twice.
The replica that takes an item, from the queue or directly, tells every replica of its pool
(`WorkTaken` on `vb.taken.<durable>`, core NATS), and each remembers the id for as long as a
work queue keeps an item; a second copy is then acknowledged unworked.

A publisher whose item the stream has not acknowledged within a quarter second (no leader,
or a leader on a node that just died) sends it on `vb.direct.<kind>.<call>`, which every
replica always reads in a queue group (Bus.publish_acked), and stores it in the background.
A replica working a slow turn is thereby never held by the stream it publishes clauses to.
An item the stream stored but no replica took within half a second goes there too (its
consumer may be electing: take_watch.py). A replica claims a direct item when a slot is
free, so a copy that reached a busy replica loses to the queue's copy at a free one.

A direct item has no redelivery: a replica that dies while working one loses it (two
failures at once, a node and a replica). While the queue delivers, this costs one small
notice per item: no direct subscription, no second copy of an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from google.protobuf.message import Message
from nats.aio.msg import Msg
from opentelemetry import context as otel_context

from voxbus.v1.meta_pb2 import Meta, WorkTaken
from voxbus_common.metrics import ERRORS, WORK_IN_FLIGHT
from voxbus_common.telemetry import extract_context

log = logging.getLogger(__name__)

REMEMBER_S = 180.0  # longer than a work queue keeps an item (max_age 2 min)
MSG_ID = "Nats-Msg-Id"


class Unsubscribable(Protocol):
    async def unsubscribe(self, limit: int = 0) -> None: ...


class DirectBus(Protocol):
    """What this needs of the bus."""

    service: str

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]],
                        queue: str = "") -> Unsubscribable: ...

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None: ...

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta: ...


def item_id(msg: Msg) -> str:
    return (msg.headers or {}).get(MSG_ID, "")


class DirectWork:
    def __init__(self, bus: DirectBus, *, stream: str, subject: str, durable: str,
                 direct_subject: str, taken_subject: str,
                 handler: Callable[[Msg], Awaitable[None]], slots: asyncio.Semaphore) -> None:
        self.bus = bus
        self.stream = stream
        self.subject = subject
        self.direct_subject = direct_subject
        self.durable = durable
        self.taken_subject = taken_subject
        self.handler = handler
        self.slots = slots  # the replica's, shared with items from the queue
        self.taken: dict[str, float] = {}  # item id -> monotonic time a replica took it
        self._sub: Unsubscribable | None = None
        self._taken_sub: Unsubscribable | None = None
        self._direct_sub: Unsubscribable | None = None
        self._switching = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return self._sub is not None

    async def start(self) -> None:
        self._taken_sub = await self.bus.subscribe(self.taken_subject, self._on_taken)
        self._direct_sub = await self.bus.subscribe(self.direct_subject, self._on_item,
                                                    queue=f"{self.durable}-direct")

    def already_taken(self, msg: Msg) -> bool:
        key = item_id(msg)
        return bool(key) and key in self.taken

    async def claim(self, msg: Msg, *, redelivered: bool = False) -> bool:
        """Take an item (from the queue or directly) unless a replica of the pool already
        did; tell the pool, so a second copy of it is not worked. A redelivery from the
        queue is always taken: the replica that took it failed it or died."""
        key = item_id(msg)
        if not key:
            return True
        if self.already_taken(msg) and not redelivered:
            return False
        self.remember(key)
        notice = WorkTaken(meta=self.bus.meta("", 0, self.taken_subject), item_id=key)
        with contextlib.suppress(Exception):
            await self.bus.publish(self.taken_subject, notice, traced=False)
        return True

    async def unavailable(self) -> None:
        """A fetch failed: the queue cannot deliver. Read the subject directly."""
        async with self._switching:
            if self._sub is not None:
                return
            try:
                self._sub = await self.bus.subscribe(self.subject, self._on_item,
                                                     queue=f"{self.durable}-direct")
            except Exception as exc:  # (no connection: the next failed fetch tries again)
                log.warning("direct work subscription failed: %s", exc,
                            extra={"stream": self.stream})
                return
        log.warning("work queue unavailable: taking items straight off %s", self.subject,
                    extra={"stream": self.stream})

    async def available(self) -> None:
        """A fetch answered: the queue delivers again."""
        if self._sub is None:
            return
        async with self._switching:
            sub, self._sub = self._sub, None
            if sub is None:
                return
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        log.info("work queue delivers again: direct subscription dropped",
                 extra={"stream": self.stream})

    def remember(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.taken[key] = now
        if len(self.taken) % 64 == 0:  # forget what no queue keeps any more
            self.taken = {k: t for k, t in self.taken.items() if now - t < REMEMBER_S}

    async def _on_taken(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):  # (a bad notice only costs a duplicate)
            notice = WorkTaken()
            notice.ParseFromString(msg.data)
            if notice.item_id:
                self.remember(notice.item_id)

    async def _on_item(self, msg: Msg) -> None:
        if self.already_taken(msg):
            return  # a copy of an item already taken
        task = asyncio.create_task(self._work(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, msg: Msg) -> None:
        async with self.slots:  # claimed once a slot is free: a busy replica's copy of an
            if not await self.claim(msg):  # item loses to a free one's (take_watch.py)
                return
            token = otel_context.attach(extract_context(msg.headers))
            in_flight = WORK_IN_FLIGHT.labels(self.stream)
            in_flight.inc()
            try:
                await self.handler(msg)
            except Exception:
                log.exception("direct work item failed", extra={"stream": self.stream})
                ERRORS.labels(self.bus.service, "work_item_failed").inc()
            finally:
                in_flight.dec()
                otel_context.detach(token)

    async def close(self) -> None:
        await self.available()
        for sub in (self._taken_sub, self._direct_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        if self._tasks:  # items taken are worked to the end, like the queue's own
            await asyncio.gather(*self._tasks, return_exceptions=True)
