"""Who is alive: a replica is declared dead only when a fresh read of its key confirms it
stopped beating, so a starved gateway loop (beats read late) never kills a live replica."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from nats.js.errors import KeyNotFoundError

from voxbus_common.bus import Bus
from voxbus_gateway.liveness import Heartbeats


@dataclass
class Entry:
    revision: int
    operation: str | None = None


class FakeKv:
    """The heartbeat bucket as the server holds it: the latest revision per key."""

    _name = "vb_stt"

    def __init__(self) -> None:
        self.keys: dict[str, Entry] = {}
        self.broken = False
        self.other_writes = 1  # revisions stored after the last key write (other names)

    @property
    def last_seq(self) -> int:
        return max((e.revision for e in self.keys.values()), default=0) + self.other_writes

    async def get(self, key: str) -> Entry:
        if self.broken:
            raise ConnectionError("nats: connection closed")
        if key not in self.keys:
            raise KeyNotFoundError
        return self.keys[key]


class FakeJetStream:
    """The bucket's stream state (stream_info), as the server reports it."""

    def __init__(self, kv: FakeKv) -> None:
        self.kv = kv

    async def stream_info(self, name: str) -> Any:
        assert name == "KV_vb_stt"
        if self.kv.broken:
            raise ConnectionError("nats: connection closed")

        @dataclass
        class State:
            last_seq: int

        @dataclass
        class Info:
            state: State

        return Info(State(self.kv.last_seq))


@dataclass
class FakeBus:
    js: FakeJetStream


def heartbeats(kv: FakeKv) -> tuple[Heartbeats, list[str]]:
    dead: list[str] = []

    async def on_dead(name: str) -> None:
        dead.append(name)

    beats = Heartbeats(cast(Bus, FakeBus(FakeJetStream(kv))), cast(Any, kv), "replica", 3.0,
                       on_dead)
    beats._seeing_since = 0.0
    return beats, dead


def seen(beats: Heartbeats, name: str, revision: int, at: float) -> None:
    beats.last_beat[name] = at
    beats.revisions[name] = revision
    beats.beats[name] = {"t": 0}


def test_a_replica_that_beat_unseen_is_not_declared_dead() -> None:
    kv = FakeKv()
    beats, dead = heartbeats(kv)
    seen(beats, "stt-a", 7, at=100.0)
    kv.keys["replica.stt-a"] = Entry(revision=12)  # it beat; the watch was not read yet
    asyncio.run(beats.judge(now=110.0))
    assert dead == [] and beats.last_beat["stt-a"] > 100.0


def test_a_silent_replica_is_declared_dead_once() -> None:
    kv = FakeKv()
    beats, dead = heartbeats(kv)
    seen(beats, "stt-a", 7, at=100.0)
    kv.keys["replica.stt-a"] = Entry(revision=7)
    asyncio.run(beats.judge(now=110.0))
    asyncio.run(beats.judge(now=111.0))
    assert dead == ["stt-a"] and "stt-a" not in beats.last_beat


def test_within_the_lease_nobody_is_read_and_blindness_judges_nobody() -> None:
    kv = FakeKv()
    beats, dead = heartbeats(kv)
    seen(beats, "stt-a", 7, at=100.0)
    kv.broken = True
    asyncio.run(beats.judge(now=102.0))  # within the lease: no read at all
    asyncio.run(beats.judge(now=110.0))  # NATS cannot tell: nobody is judged
    assert dead == [] and "stt-a" in beats.last_beat


def test_a_deleted_key_is_a_replica_gone() -> None:
    kv = FakeKv()
    beats, dead = heartbeats(kv)
    seen(beats, "stt-a", 7, at=100.0)
    asyncio.run(beats.judge(now=110.0))
    assert dead == ["stt-a"]


def test_a_bucket_that_stores_nothing_judges_nobody() -> None:
    """A clustered bucket electing a leader stores no beat: every replica looks silent, but
    nothing else was stored either, so nobody is declared dead."""
    kv = FakeKv()
    beats, dead = heartbeats(kv)
    seen(beats, "stt-a", 7, at=100.0)
    kv.keys["replica.stt-a"] = Entry(revision=7)
    kv.other_writes = 0
    asyncio.run(beats.judge(now=110.0))
    assert dead == [] and "stt-a" in beats.last_beat
    kv.other_writes = 3  # another replica's beats are stored again: stt-a's silence is real
    beats._seeing_since = 0.0  # (a blind round restarts the lease on the real clock)
    asyncio.run(beats.judge(now=120.0))
    assert dead == ["stt-a"]


def test_a_silent_replica_that_answers_a_probe_lives() -> None:
    """Its beats queued behind a saturated server: the probe it answers keeps it; one that
    does not answer (killed: no responders) is declared dead as before."""
    kv = FakeKv()
    dead: list[str] = []
    asked: list[str] = []

    async def on_dead(name: str) -> None:
        dead.append(name)

    async def answers(name: str) -> bool:
        asked.append(name)
        return name == "stt-slow"

    beats = Heartbeats(cast(Bus, FakeBus(FakeJetStream(kv))), cast(Any, kv), "replica", 3.0,
                       on_dead, answers=answers)
    beats._seeing_since = 0.0
    for name in ("stt-slow", "stt-killed"):
        seen(beats, name, 7, at=100.0)
        kv.keys[f"replica.{name}"] = Entry(revision=7)
    asyncio.run(beats.judge(now=110.0))
    assert sorted(asked) == ["stt-killed", "stt-slow"]
    assert dead == ["stt-killed"] and beats.last_beat["stt-slow"] > 100.0
