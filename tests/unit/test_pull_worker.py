"""The work-queue loop (pull_worker.py) with a fake JetStream: a replica whose fetches
failed reads items directly, and goes back to the queue as soon as its consumer answers,
also when the queue is idle (no item has to come through it first)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.js.errors import ServiceUnavailableError

from tests.unit.test_direct_work import FakeBus, FakeSub

WAIT_S = 30.0


class FakePull:
    """A pull subscription whose first fetch fails (a stream not ready at start) and whose
    later fetches find nothing; its consumer answers from `answers_after` questions on."""

    def __init__(self, answers_after: int) -> None:
        self.fetches = 0
        self.questions = 0
        self.answers_after = answers_after
        self.fetched = asyncio.Event()  # a few empty fetches happened

    async def fetch(self, batch: int, timeout: float) -> list[Any]:  # noqa: ASYNC109
        self.fetches += 1
        if self.fetches >= 5:
            self.fetched.set()
        if self.fetches == 1:
            raise ServiceUnavailableError()
        await asyncio.sleep(0)
        raise nats.errors.TimeoutError

    async def consumer_info(self) -> object:
        self.questions += 1
        if self.questions <= self.answers_after:
            raise nats.errors.TimeoutError
        return object()

    async def unsubscribe(self) -> None:
        return None


class FakeJs:
    def __init__(self, pull: FakePull) -> None:
        self.pull = pull

    async def pull_subscribe(self, subject: str, **kwargs: Any) -> FakePull:
        return self.pull


class WatchedSub(FakeSub):
    def __init__(self, subject: str, queue: str) -> None:
        super().__init__(subject, queue)
        self.dropped = asyncio.Event()

    async def unsubscribe(self, limit: int = 0) -> None:
        await super().unsubscribe(limit)
        self.dropped.set()


class QueueBus(FakeBus):
    def __init__(self, pull: FakePull) -> None:
        super().__init__()
        self.js = FakeJs(pull)

    async def subscribe(self, subject: str, handler: Any, queue: str = "") -> FakeSub:
        self.subs.append(WatchedSub(subject, queue))
        self.handlers[subject] = handler
        return self.subs[-1]

    def direct_sub(self) -> WatchedSub:
        sub = next(s for s in self.subs if s.subject == "vb.work.llm.*")
        assert isinstance(sub, WatchedSub)
        return sub


async def serve(bus: QueueBus, stop: asyncio.Event) -> asyncio.Task[None]:
    from voxbus_common.pull_worker import serve_work_queue

    async def handler(msg: Any) -> None:
        return None

    return asyncio.create_task(serve_work_queue(
        bus, stream="VB_LLM_WORK", durable="llm-workers", subject="vb.work.llm.*",  # type: ignore[arg-type]
        handler=handler, concurrency=1, stop=stop, direct=True))


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_an_idle_queue_that_answers_ends_the_direct_reading() -> None:
    pull, stop = FakePull(answers_after=2), asyncio.Event()
    bus = QueueBus(pull)
    task = await serve(bus, stop)
    await asyncio.wait_for(until(lambda: any(s.subject == "vb.work.llm.*" for s in bus.subs)),
                           WAIT_S)  # the failed fetch: items straight off the subject
    await asyncio.wait_for(bus.direct_sub().dropped.wait(), WAIT_S)  # the consumer answered
    assert pull.questions == 3
    stop.set()
    await asyncio.wait_for(task, WAIT_S)


async def test_direct_reading_goes_on_while_the_consumer_does_not_answer() -> None:
    pull, stop = FakePull(answers_after=1_000_000), asyncio.Event()
    bus = QueueBus(pull)
    task = await serve(bus, stop)
    await asyncio.wait_for(pull.fetched.wait(), WAIT_S)  # four empty fetches after the failure
    assert not bus.direct_sub().unsubscribed and pull.questions >= 3
    stop.set()
    await asyncio.wait_for(task, WAIT_S)
