"""Memory's direct-get view of a bucket (Bus.direct_reads): a bucket another replica just
made may not answer at once, and one that never answers leaves reads with its leader; the
service starts either way."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.kv import KeyValue

from voxbus_common.bus import Bus
from voxbus_common.config import Settings


class SlowJs:
    """Answers stream info only after `silent` tries; the bucket allows direct gets."""

    def __init__(self, silent: int) -> None:
        self.silent = silent
        self.asked = 0

    async def stream_info(self, name: str) -> Any:
        self.asked += 1
        if self.asked <= self.silent:
            raise NatsTimeoutError()
        return SimpleNamespace(config=SimpleNamespace(allow_direct=True))


class FakeNc:
    def __init__(self, js: SlowJs) -> None:
        self.js = js

    def jetstream(self) -> SlowJs:
        return self.js


def leader_view(js: SlowJs) -> KeyValue:
    return KeyValue(name="vb_sessions", stream="KV_vb_sessions", pre="$KV.vb_sessions.",
                    js=cast(Any, js), direct=False)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    pause = asyncio.sleep

    async def no_sleep(_: float) -> None:
        await pause(0)
    monkeypatch.setattr(asyncio, "sleep", no_sleep)  # (the bus module waits with it)


async def test_a_bucket_that_answers_late_gets_a_direct_view() -> None:
    js = SlowJs(silent=3)
    bus = Bus(cast(Any, FakeNc(js)), Settings(), "memory-a")
    reads = await bus.direct_reads(leader_view(js))
    assert reads._direct and js.asked == 4


async def test_a_bucket_that_never_answers_leaves_reads_with_its_leader() -> None:
    js = SlowJs(silent=1000)
    bus = Bus(cast(Any, FakeNc(js)), Settings(), "memory-a")
    kv = leader_view(js)
    assert await bus.direct_reads(kv) is kv and js.asked == 10
