"""A stored work item no replica took in time goes direct too; a taken one does not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from voxbus.v1.meta_pb2 import WorkTaken
from voxbus_common.take_watch import TakeWatch

TAKEN = "vb.taken.llm-workers"
DIRECT = "vb.direct.llm.c1"


class FakeBus:
    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[Msg], Awaitable[None]]] = {}
        self.subscribed: list[str] = []
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.sent_event = asyncio.Event()

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.sent.append((subject, data, headers))
        self.sent_event.set()

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]],
                        queue: str = "") -> object:
        self.subscribed.append(subject)
        self.handlers[subject] = handler
        return object()


def notice(item_id: str) -> Msg:
    return Msg(None, subject=TAKEN,  # type: ignore[arg-type]
               data=WorkTaken(item_id=item_id).SerializeToString())


async def test_an_item_nobody_took_is_sent_on_its_direct_subject() -> None:
    bus = FakeBus()
    watch = TakeWatch(bus, wait_s=0.01)
    headers = {"Nats-Msg-Id": "c1-llm-1"}
    await watch.expect(TAKEN, "c1-llm-1", DIRECT, b"turn", headers)
    await asyncio.wait_for(bus.sent_event.wait(), 10)
    assert bus.sent == [(DIRECT, b"turn", headers)]  # same id: the claim dedupes copies
    assert not watch.waiting


async def test_an_item_a_replica_took_is_not_sent_again() -> None:
    bus = FakeBus()
    watch = TakeWatch(bus, wait_s=60.0)
    await watch.expect(TAKEN, "c1-llm-1", DIRECT, b"turn", {})
    await watch.expect(TAKEN, "c1-llm-2", DIRECT, b"turn", {})
    assert bus.subscribed == [TAKEN]  # one subscription per pool
    await bus.handlers[TAKEN](notice("c1-llm-1"))
    await bus.handlers[TAKEN](Msg(None, subject=TAKEN, data=b"\xff no notice"))  # type: ignore[arg-type]
    assert list(watch.waiting) == ["c1-llm-2"]
    watch.cancel("c1-llm-2")  # it went direct anyway, or its publish failed
    watch.cancel("never-watched")
    assert not watch.waiting and not bus.sent


async def test_closing_sends_nothing_more() -> None:
    bus = FakeBus()
    watch = TakeWatch(bus, wait_s=60.0)
    await watch.expect(TAKEN, "c1-llm-1", DIRECT, b"turn", {})
    timer = watch.waiting["c1-llm-1"]
    watch.close()
    assert timer.cancelled() and not watch.waiting
