"""Serving a work-queue stream: each item goes to exactly one replica of a pool.

The pull loop of `Bus.run_pull_worker`, kept apart from the connection it runs on: it
needs only JetStream and what direct work needs (a narrow `WorkBus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from opentelemetry import context as otel_context

from voxbus_common.codec import BadMessage
from voxbus_common.direct_work import DirectBus, DirectWork
from voxbus_common.ids import InvalidCallId
from voxbus_common.metrics import ERRORS, QUEUE_DEPTH, WORK_IN_FLIGHT
from voxbus_common.subjects import direct_work, work_taken
from voxbus_common.telemetry import extract_context

log = logging.getLogger(__name__)

FETCH_WAIT_S = 1.0  # a fetch pending on a dead node is given up after this


class WorkBus(DirectBus, Protocol):
    js: JetStreamContext


async def _keep_claimed(msg: Msg, ack_wait_s: float) -> None:
    """Tell JetStream the work item is still being worked on, every third of the ack wait,
    for as long as the handler runs (handlers bound their own time)."""
    while True:
        await asyncio.sleep(ack_wait_s / 3)
        with contextlib.suppress(Exception):
            await msg.in_progress()


def deliveries(msg: Msg) -> int:
    """How many times this work item has been delivered (this delivery included; 1 for an
    item taken straight off its subject)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


async def serve_work_queue(
    bus: WorkBus,
    *,
    stream: str,
    durable: str,
    subject: str,
    handler: Callable[[Msg], Awaitable[None]],
    concurrency: int,
    stop: asyncio.Event,
    ack_wait_s: float = 30.0,
    max_deliver: int = 4,
    failure_retries: int = 1,
    direct: bool = False,
) -> None:
    """Serve a work-queue stream: each message goes to exactly one replica.

    A handler that raises naks the message, so it is redelivered to any replica, up to
    `failure_retries` times (then it is terminated); a handler that returns acks it.
    Deliveries that reach no handler are why `max_deliver` is larger: a replica cut off
    from the network (not dead: its connection looks open) has pull requests queued for
    up to 2 s, and a redelivery handed to one is lost. While a handler works the
    message is kept claimed (`in_progress`), so a long turn (tool rounds) is not
    redelivered to a second replica, and the ack wait can be short: a replica that dies
    stops claiming, and its item moves to another replica within one ack wait.
    With `direct`, items also come straight off the subject while fetches fail (a
    clustered queue electing a leader: direct_work.py) or from a publisher whose item no
    replica took (take_watch.py); they share the `concurrency` slots with the queue's.
    """
    sub = await bus.js.pull_subscribe(
        subject,
        durable=durable,
        stream=stream,
        config=ConsumerConfig(ack_wait=ack_wait_s, max_deliver=max_deliver),
    )

    in_flight = WORK_IN_FLIGHT.labels(stream)
    depth = QUEUE_DEPTH.labels(stream)
    bypass: DirectWork | None = None
    slots = asyncio.Semaphore(max(1, concurrency))  # shared with direct items, if any
    if direct:
        bypass = DirectWork(bus, stream=stream, subject=subject, durable=durable,
                            direct_subject=direct_work(subject),
                            taken_subject=work_taken(durable), handler=handler, slots=slots)
        await bypass.start()

    async def work(msg: Msg) -> None:
        if bypass is not None and not await bypass.claim(msg, redelivered=deliveries(msg) > 1):
            await msg.ack()  # a copy of an item another replica took
            return
        with contextlib.suppress(Exception):  # metadata of a JetStream message
            depth.set(msg.metadata.num_pending)
        token = otel_context.attach(extract_context(msg.headers))
        in_flight.inc()
        try:
            await handler(msg)
        except (BadMessage, InvalidCallId) as exc:
            log.warning("dropping bad work item: %s", exc, extra={"stream": stream})
            ERRORS.labels(bus.service, "bad_work_item").inc()
            await msg.term()
            return
        except Exception:
            log.exception("work item failed", extra={"stream": stream})
            ERRORS.labels(bus.service, "work_item_failed").inc()
            if deliveries(msg) > failure_retries:  # no retry left: drop it
                await msg.term()
            else:
                await msg.nak(delay=0.2)
            return
        finally:
            in_flight.dec()
            otel_context.detach(token)
        await msg.ack()

    async def loop() -> None:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
            except nats.errors.TimeoutError:  # idle, or a leaderless consumer
                depth.set(0)
                if bypass is not None and bypass.active and await _answers(sub):
                    await bypass.available()  # an idle queue that answers delivers again
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.DrainTimeoutError):
                return
            except Exception as exc:
                log.warning("fetch failed: %s", exc, extra={"stream": stream})
                if bypass is not None:
                    await bypass.unavailable()
                await asyncio.sleep(0.5)
                continue
            if bypass is not None:
                await bypass.available()
            for msg in msgs:  # claimed from here on, also while direct items hold the slots
                keeper = asyncio.create_task(_keep_claimed(msg, ack_wait_s))
                try:
                    async with slots:
                        await work(msg)
                finally:
                    keeper.cancel()

    await asyncio.gather(*(loop() for _ in range(max(1, concurrency))))
    if bypass is not None:
        await bypass.close()
    with contextlib.suppress(Exception):  # lets drain() finish instead of waiting on it
        await sub.unsubscribe()


async def _answers(sub: JetStreamContext.PullSubscription) -> bool:
    """Whether the work queue's consumer answers (it has a leader): asked while a replica
    reads items directly and its fetches come back empty. Without it a replica whose first
    fetch failed (a stream not ready yet at start) read directly until an item reached it
    through the queue, and every item it took meanwhile had no redelivery."""
    try:
        await asyncio.wait_for(sub.consumer_info(), FETCH_WAIT_S)
    except Exception:
        return False
    return True
