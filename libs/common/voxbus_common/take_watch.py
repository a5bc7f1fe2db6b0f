"""The publisher's half of direct work: an item stored but taken by no replica goes direct.

A work-queue stream can store an item while the *consumer* its replicas fetch from has no
leader (its node just died; the stream's leader lives elsewhere). The publisher got its ack,
so it does not send the item directly (Bus.publish_acked), and the replicas read the subject
directly only after their own fetches fail, which can be a moment after the item went by:
the item waits out the consumer's election, 4-9 s (seen when the meta leader was killed).

Every replica announces each item it takes (`WorkTaken` on `vb.taken.<pool>`:
direct_work.py). So the publisher listens to the pools it publishes to, and an item not
taken within TAKE_WAIT_S is sent on its direct subject as well. That copy reaches one
replica of the pool (a queue group every replica always reads), which claims it only once
it has a free slot: if the queue delivers the stored copy to a replica first, that one
works it and the direct copy is dropped. So an item that waits because every slot is busy
(plain backpressure) costs one extra message and is still worked by the first free replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.aio.msg import Msg

from voxbus.v1.meta_pb2 import WorkTaken

log = logging.getLogger(__name__)

TAKE_WAIT_S = 0.5  # a free replica takes an item within milliseconds


class WatchBus(Protocol):
    """What this needs of the connection: raw publish and a core subscription."""

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str]) -> None: ...

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]],
                        queue: str = "") -> object: ...


class TakeWatch:
    def __init__(self, bus: WatchBus, wait_s: float = TAKE_WAIT_S) -> None:
        self.bus = bus
        self.wait_s = wait_s
        self.waiting: dict[str, asyncio.TimerHandle] = {}  # item id -> its direct send
        self._pools: set[str] = set()  # taken subjects listened to
        self._listening = asyncio.Lock()
        self._sending: set[asyncio.Task[None]] = set()

    async def expect(self, taken_subject: str, item_id: str, direct_subject: str,
                     data: bytes, headers: dict[str, str]) -> None:
        """Watch for the take of an item about to be published (before it is, so a take
        faster than the stream's ack is not missed)."""
        await self._listen(taken_subject)
        self.cancel(item_id)
        self.waiting[item_id] = asyncio.get_running_loop().call_later(
            self.wait_s, self._send, item_id, direct_subject, data, headers)

    def cancel(self, item_id: str) -> None:
        """The item went direct anyway, or its publish failed: nothing to watch."""
        timer = self.waiting.pop(item_id, None)
        if timer is not None:
            timer.cancel()

    async def _listen(self, taken_subject: str) -> None:
        if taken_subject in self._pools:
            return
        async with self._listening:
            if taken_subject not in self._pools:
                await self.bus.subscribe(taken_subject, self._on_taken)
                self._pools.add(taken_subject)

    async def _on_taken(self, msg: Msg) -> None:
        notice = WorkTaken()
        with contextlib.suppress(Exception):  # (a bad notice only costs a direct copy)
            notice.ParseFromString(msg.data)
            self.cancel(notice.item_id)

    def _send(self, item_id: str, direct_subject: str, data: bytes,
              headers: dict[str, str]) -> None:
        self.waiting.pop(item_id, None)
        log.info("work item stored but not taken within %.1f s: sent directly too", self.wait_s,
                 extra={"subject": direct_subject})
        task = asyncio.create_task(self._publish(direct_subject, data, headers))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await self.bus.publish_raw(subject, data, headers)
        except Exception as exc:  # (the stored copy is still there for the queue)
            log.warning("direct copy of a waiting work item not sent: %s", exc,
                        extra={"subject": subject})

    def close(self) -> None:
        for timer in self.waiting.values():
            timer.cancel()
        self.waiting.clear()
