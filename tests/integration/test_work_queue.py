"""The work-queue contract against a real nats-server: a work item whose handler runs longer
than the ack wait (a turn with tool rounds) stays with its replica and is not handed to a
second one, so nothing (a booking webhook, a spoken answer) happens twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig

from voxbus.v1.llm_pb2 import LlmRequest
from voxbus_cli.embedded import start_nats, stop_all
from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_common.config import Settings


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_nats(Path(tmp_path_factory.mktemp("nats")))
    try:
        yield url
    finally:
        stop_all([proc])


async def test_a_long_work_item_is_not_redelivered(nats_url: str) -> None:
    settings = Settings().model_copy(update={"nats_url": nats_url})
    worker_a, worker_b = await Bus.connect(settings, "a"), await Bus.connect(settings, "b")
    await worker_a.ensure_streams()
    stop = asyncio.Event()
    deliveries: list[tuple[str, int]] = []
    done = asyncio.Event()

    def handler(name: str) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            deliveries.append((name, msg.metadata.num_delivered))
            await asyncio.sleep(3.5)  # the work itself: 3.5 ack waits of 1 s
            done.set()
        return handle

    workers = [asyncio.create_task(bus.run_pull_worker(
        stream="VB_LLM_WORK", durable="long-work", subject="vb.work.llm.*",
        handler=handler(name), concurrency=1, stop=stop, ack_wait_s=1.0))
        for name, bus in (("a", worker_a), ("b", worker_b))]
    await worker_a.js.publish("vb.work.llm.c1", b"turn")
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await asyncio.gather(*workers)
    assert len(deliveries) == 1 and deliveries[0][1] == 1, deliveries
    for bus in (worker_a, worker_b):
        await bus.close()


async def test_a_bucket_made_without_direct_gets_is_given_them(nats_url: str) -> None:
    """A deployment's sessions bucket from before direct gets: memory's reads for a turn
    are answered by any replica once it starts (Bus.direct_reads updates the bucket)."""
    settings = Settings().model_copy(update={"nats_url": nats_url})
    bus = await Bus.connect(settings, "memory")
    try:
        old = await bus.js.create_key_value(KeyValueConfig(bucket="vb_before_direct", history=1))
        await old.put("call-1", b"turn one")
        reads = await bus.direct_reads(old)
        assert (await bus.js.stream_info("KV_vb_before_direct")).config.allow_direct
        assert reads._direct and (await reads.get("call-1")).value == b"turn one"
        await old.put("call-1", b"turn two")  # (one node: a direct get does not lag)
        assert (await reads.get("call-1")).value == b"turn two"
    finally:
        await bus.close()


@pytest.fixture
def own_nats_url(tmp_path: Path) -> Iterator[str]:
    """A server of its own: a work-queue stream takes one consumer per subject."""
    proc, url = start_nats(tmp_path)
    try:
        yield url
    finally:
        stop_all([proc])


async def test_a_stored_item_its_pool_cannot_fetch_reaches_a_replica_directly(
        own_nats_url: str) -> None:
    """The consumer answers no fetch (paused here; in a cluster, electing a leader after its
    node died) while the stream stores items: a stored item no replica took goes direct to
    one replica (take_watch.py), and the queue's copy, delivered later, is not worked again."""
    settings = Settings().model_copy(update={"nats_url": own_nats_url})
    gateway = await Bus.connect(settings, "gateway")
    replicas = [await Bus.connect(settings, f"llm-{i}") for i in range(2)]
    await gateway.ensure_streams()
    stop = asyncio.Event()
    worked: list[tuple[str, bytes]] = []
    taken = asyncio.Event()

    def handler(name: str) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            worked.append((name, msg.data))
            taken.set()
        return handle

    workers = [asyncio.create_task(bus.run_pull_worker(
        stream="VB_LLM_WORK", durable=subjects.LLM_POOL, subject="vb.work.llm.*",
        handler=handler(bus.name), concurrency=1, stop=stop, direct=True))
        for bus in replicas]
    try:
        await until(lambda: consumer_exists(gateway, "VB_LLM_WORK", subjects.LLM_POOL))
        await gateway.js.pause_consumer("VB_LLM_WORK", subjects.LLM_POOL,
                                        "2099-01-01T00:00:00Z")
        request = LlmRequest(user_text="what time is it")
        await gateway.publish_acked(subjects.work_llm("c1"), request, msg_id="c1-llm-1",
                                    direct=True)
        await asyncio.wait_for(taken.wait(), 60)
        assert [data for _, data in worked] == [request.SerializeToString()]
        await gateway.js.resume_consumer("VB_LLM_WORK", subjects.LLM_POOL)
        await until(lambda: stream_empty(gateway, "VB_LLM_WORK"))  # the copy: acked unworked
        assert len(worked) == 1, worked
        assert not gateway._takes.waiting
    finally:
        stop.set()
        await asyncio.gather(*workers)
        for bus in (gateway, *replicas):
            await bus.close()


async def consumer_exists(bus: Bus, stream: str, durable: str) -> bool:
    try:
        await bus.js.consumer_info(stream, durable)
    except Exception:
        return False
    return True


async def stream_empty(bus: Bus, stream: str) -> bool:
    return (await bus.js.stream_info(stream)).state.messages == 0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout_s)
