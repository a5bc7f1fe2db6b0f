"""An STT call lease stops only for another owner: its own write whose answer was lost (a
NATS node going down between storing and replying) moves the key too, and must not make
the replica give up a call nobody else took."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, cast

from nats.js.errors import KeyWrongLastSequenceError

from voxbus_stt.lease import CallLease


@dataclass
class Entry:
    value: bytes
    revision: int


class FakeKv:
    def __init__(self) -> None:
        self.entry = Entry(b"", 0)
        self.lose_next_answer = False

    async def put(self, key: str, value: bytes) -> int:
        self.entry = Entry(value, self.entry.revision + 1)
        return self.entry.revision

    async def update(self, key: str, value: bytes, last: int) -> int:
        if last != self.entry.revision:
            raise KeyWrongLastSequenceError
        revision = await self.put(key, value)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise TimeoutError("nats: timeout")  # stored, but the answer never came
        return revision

    async def get(self, key: str) -> Entry:
        return self.entry


def test_a_lost_answer_to_its_own_write_keeps_the_call() -> None:
    kv = FakeKv()
    lease = CallLease(cast(Any, kv), "c1", "stt-a")

    async def run() -> list[bool]:
        assert await lease.write(10, 0)
        kv.lose_next_answer = True
        with contextlib.suppress(TimeoutError):  # (the worker logs it, writes next round)
            await lease.write(20, 0)
        return [await lease.write(30, 0), await lease.write(40, 0)]

    assert asyncio.run(run()) == [True, True]
    assert json.loads(kv.entry.value)["seq"] == 40


def test_another_owner_ends_the_lease() -> None:
    kv = FakeKv()
    lease = CallLease(cast(Any, kv), "c1", "stt-a")

    async def run() -> bool:
        await lease.write(10, 0)
        await kv.put("call.c1", json.dumps({"owner": "stt-b"}).encode())  # a takeover
        return await lease.write(20, 0)

    assert asyncio.run(run()) is False
