"""Test doubles for the memory and LLM summary code: an in-memory JetStream KV with
revisions, and a bus whose request/reply is a Python function."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from voxbus.v1.meta_pb2 import Meta


@dataclass
class Entry:
    key: str
    value: bytes | None
    revision: int


class FakeKV:
    """Compare-and-set semantics of nats KeyValue; `before_update` runs once, right before
    the next update is checked (to play a concurrent writer)."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self._rev = itertools.count(1)
        self.before_update: Callable[[], None] | None = None
        self.conflicts = 0

    async def get(self, key: str) -> Entry:
        if key not in self.data:
            raise KeyNotFoundError
        return self.data[key]

    def put_now(self, key: str, value: bytes) -> None:
        self.data[key] = Entry(key, value, next(self._rev))

    async def create(self, key: str, value: bytes) -> int:
        if key in self.data:
            self.conflicts += 1
            raise KeyWrongLastSequenceError
        self.put_now(key, value)
        return self.data[key].revision

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        hook, self.before_update = self.before_update, None
        if hook is not None:
            hook()
        if key not in self.data or self.data[key].revision != last:
            self.conflicts += 1
            raise KeyWrongLastSequenceError
        self.put_now(key, value)
        return self.data[key].revision

    async def purge(self, key: str) -> bool:
        self.data.pop(key, None)
        return True


@dataclass
class Reply:
    data: bytes


@dataclass
class FakeNc:
    """`request` calls `answer(subject, data)`; `publish` records replies."""

    answer: Callable[[str, bytes], Awaitable[bytes]] | None = None
    published: list[tuple[str, bytes]] = field(default_factory=list)
    requests: list[tuple[str, bytes]] = field(default_factory=list)

    async def request(self, subject: str, data: bytes, timeout: float = 1.0,  # noqa: ASYNC109 (nats-py signature)
                      headers: dict[str, str] | None = None) -> Reply:
        self.requests.append((subject, data))
        if self.answer is None:
            raise TimeoutError
        async with asyncio.timeout(timeout):
            return Reply(await self.answer(subject, data))

    async def publish(self, subject: str, data: bytes, **_: Any) -> None:
        self.published.append((subject, data))


class FakeBus:
    def __init__(self, nc: FakeNc | None = None) -> None:
        self.nc = nc or FakeNc()

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id, seq=1, sent_unix_ns=1)


@dataclass
class Msg:
    """What a core subscription hands a handler."""

    data: bytes
    reply: str = "_INBOX.test"
    headers: dict[str, str] | None = None
    subject: str = ""
