"""Work items straight off their subject while the queue cannot deliver, worked once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from nats.aio.msg import Msg

from voxbus.v1.meta_pb2 import Meta, WorkTaken
from voxbus_common.direct_work import DirectWork


class FakeSub:
    def __init__(self, subject: str, queue: str) -> None:
        self.subject, self.queue = subject, queue
        self.unsubscribed = False

    async def unsubscribe(self, limit: int = 0) -> None:
        self.unsubscribed = True


class FakeBus:
    service = "llm"

    def __init__(self) -> None:
        self.subs: list[FakeSub] = []
        self.handlers: dict[str, Callable[[Msg], Awaitable[None]]] = {}
        self.published: list[tuple[str, Message]] = []

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]],
                        queue: str = "") -> FakeSub:
        self.subs.append(FakeSub(subject, queue))
        self.handlers[subject] = handler
        return self.subs[-1]

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None:
        self.published.append((subject, msg))

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id, seq=1)


def item(key: str, data: bytes = b"turn") -> Msg:
    return Msg(None, subject="vb.work.llm.c1", reply="_INBOX.x", data=data,  # type: ignore[arg-type]
               headers={"Nats-Msg-Id": key})


async def make(worked: list[bytes]) -> tuple[DirectWork, FakeBus]:
    bus = FakeBus()

    async def handler(msg: Msg) -> None:
        worked.append(msg.data)

    direct = DirectWork(bus, stream="VB_LLM_WORK", subject="vb.work.llm.*",
                        durable="llm-workers", direct_subject="vb.direct.llm.*",
                        taken_subject="vb.taken.llm-workers",
                        handler=handler, slots=asyncio.Semaphore(2))
    await direct.start()
    return direct, bus


async def settle(direct: DirectWork) -> None:
    await asyncio.gather(*direct._tasks)


async def test_nothing_is_read_directly_while_the_queue_delivers() -> None:
    direct, bus = await make([])
    await direct.available()
    assert not direct.active
    assert [(s.subject, s.queue) for s in bus.subs] == [
        ("vb.taken.llm-workers", ""), ("vb.direct.llm.*", "llm-workers-direct")]


async def test_a_failed_fetch_reads_the_subject_in_a_queue_group_until_one_answers() -> None:
    worked: list[bytes] = []
    direct, bus = await make(worked)
    await direct.unavailable()
    await direct.unavailable()  # every slot's fetch fails: still one subscription
    assert direct.active and len(bus.subs) == 3
    assert (bus.subs[2].subject, bus.subs[2].queue) == ("vb.work.llm.*", "llm-workers-direct")
    await direct.available()
    assert not direct.active and bus.subs[2].unsubscribed


async def test_an_item_taken_directly_is_announced_worked_once_and_its_copy_skipped() -> None:
    worked: list[bytes] = []
    direct, bus = await make(worked)
    await direct.unavailable()
    on_item = bus.handlers["vb.work.llm.*"]
    await on_item(item("c1-llm-3"))
    await on_item(item("c1-llm-3"))  # the publisher's retry reaches the subject again
    await settle(direct)
    assert worked == [b"turn"]
    [(subject, notice)] = bus.published
    assert subject == "vb.taken.llm-workers"
    assert isinstance(notice, WorkTaken) and notice.item_id == "c1-llm-3"
    assert direct.already_taken(item("c1-llm-3"))  # the queue's copy, later: not worked
    assert not direct.already_taken(item("c1-llm-4"))


async def test_an_item_another_replica_took_is_skipped_here() -> None:
    worked: list[bytes] = []
    direct, bus = await make(worked)
    notice = WorkTaken(item_id="c1-tts-2-0")
    await bus.handlers["vb.taken.llm-workers"](
        Msg(None, subject="vb.taken.llm-workers", data=notice.SerializeToString()))  # type: ignore[arg-type]
    await bus.handlers["vb.taken.llm-workers"](
        Msg(None, subject="vb.taken.llm-workers", data=b"\xff not a notice"))  # type: ignore[arg-type]
    assert direct.already_taken(item("c1-tts-2-0"))
    await direct.unavailable()
    await bus.handlers["vb.work.llm.*"](item("c1-tts-2-0"))
    await settle(direct)
    assert worked == []


async def test_an_item_sent_straight_on_is_worked_without_a_failed_fetch() -> None:
    worked: list[bytes] = []
    direct, bus = await make(worked)  # the queue's stream stored nothing: publish_acked
    await bus.handlers["vb.direct.llm.*"](item("c1-llm-5"))  # sent it on vb.direct.llm.c1
    await settle(direct)
    assert worked == [b"turn"] and direct.already_taken(item("c1-llm-5"))


async def test_an_item_taken_from_the_queue_is_announced_so_a_late_direct_copy_is_skipped() -> None:
    worked: list[bytes] = []
    direct, bus = await make(worked)  # the stream acknowledged late: the publisher also
    assert await direct.claim(item("c1-llm-6"))  # sent it directly; the queue came first
    [(subject, notice)] = bus.published
    assert subject == "vb.taken.llm-workers" and notice.item_id == "c1-llm-6"  # type: ignore[attr-defined]
    await bus.handlers["vb.direct.llm.*"](item("c1-llm-6"))
    await settle(direct)
    assert worked == [] and not await direct.claim(item("c1-llm-6"))
    assert await direct.claim(item(""))  # (an item without an id cannot be told apart)


async def test_a_redelivery_from_the_queue_is_worked_though_its_id_was_taken() -> None:
    direct, _ = await make([])  # the replica that took it from the queue failed it or died
    assert await direct.claim(item("c1-llm-7"))
    assert not await direct.claim(item("c1-llm-7"))
    assert await direct.claim(item("c1-llm-7"), redelivered=True)


async def test_a_failing_item_is_reported_and_the_replica_goes_on() -> None:
    bus = FakeBus()

    async def handler(msg: Msg) -> None:
        raise RuntimeError("model server gone")

    direct = DirectWork(bus, stream="VB_LLM_WORK", subject="vb.work.llm.*",
                        durable="llm-workers", direct_subject="vb.direct.llm.*",
                        taken_subject="vb.taken.llm-workers",
                        handler=handler, slots=asyncio.Semaphore(1))
    await direct.start()
    await direct.unavailable()
    await bus.handlers["vb.work.llm.*"](item("a"))
    await bus.handlers["vb.work.llm.*"](item("b"))
    await settle(direct)
    assert direct.already_taken(item("a")) and direct.already_taken(item("b"))
    await direct.close()
    assert all(s.unsubscribed for s in bus.subs)


def test_ids_are_forgotten_once_no_queue_keeps_the_item() -> None:
    direct = DirectWork(FakeBus(), stream="S", subject="x", durable="d", direct_subject="y",
                        taken_subject="t",
                        handler=lambda msg: asyncio.sleep(0), slots=asyncio.Semaphore(1))
    for i in range(63):
        direct.remember(f"old-{i}", now=0.0)
    direct.remember("new", now=1000.0)  # the 64th: old ones are pruned
    assert list(direct.taken) == ["new"]


async def test_a_direct_copy_waiting_for_a_slot_loses_to_the_queue_copy_taken_elsewhere() -> None:
    """A stored item no one took in time goes direct and may reach a busy replica; it is
    claimed only when a slot frees, so a free replica that took the queue's copy wins."""
    bus = FakeBus()
    release, started = asyncio.Event(), asyncio.Event()
    worked: list[str] = []

    async def handler(msg: Msg) -> None:
        worked.append(item_id_of(msg))
        started.set()
        await release.wait()

    direct = DirectWork(bus, stream="VB_LLM_WORK", subject="vb.work.llm.*",
                        durable="llm-workers", direct_subject="vb.direct.llm.*",
                        taken_subject="vb.taken.llm-workers", handler=handler,
                        slots=asyncio.Semaphore(1))
    await direct.start()
    on_direct = bus.handlers["vb.direct.llm.*"]
    await on_direct(item("busy"))
    await started.wait()  # the first item holds the only slot
    await on_direct(item("late"))
    taken = WorkTaken(item_id="late").SerializeToString()  # the queue's copy, at a free replica
    await bus.handlers["vb.taken.llm-workers"](
        Msg(None, subject="vb.taken.llm-workers", data=taken))  # type: ignore[arg-type]
    release.set()
    await settle(direct)
    assert worked == ["busy"]


def item_id_of(msg: Msg) -> str:
    return (msg.headers or {}).get("Nats-Msg-Id", "")
