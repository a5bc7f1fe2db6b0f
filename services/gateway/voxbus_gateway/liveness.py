"""Who is alive: heartbeats in a KV bucket (`<prefix>.<name>` = {"t": unix time, ...}),
watched. A name that stops beating for `lease_s` is declared dead once; a name whose key is
deleted left cleanly and is simply forgotten. Used for STT replicas (stt_watch.py) and for
gateway replicas (gateway_watch.py).

Blindness is not death: while this process is cut off from NATS, or its own event loop was
stalled, nobody is judged; after a reconnect the watch is made again (a NATS restart drops
its consumer) and every name gets a full lease from that moment before it can be declared
dead. A starved loop (a flood of calls) reads the watch late, so before a name is declared
dead its key is read once more: a revision newer than the last beat seen means it beats
and this process was merely behind (clock-free: no wall times are compared)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from voxbus_common.bus import Bus
from voxbus_common.metrics import LATE_BEATS, REPLICAS_LOST

log = logging.getLogger(__name__)

Beat = dict[str, Any]


class Heartbeats:
    def __init__(self, bus: Bus, kv: KeyValue, prefix: str, lease_s: float,
                 on_dead: Callable[[str], Awaitable[None]], *, ignore: str = "",
                 answers: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.bus = bus
        # Asked last, before a silent name is declared dead: does the process answer a
        # request? A killed one has no subscription left (NATS says "no responders" at
        # once); a live one whose beats queued behind a saturated server answers.
        self.answers = answers
        self.kv = kv
        self.prefix = prefix
        self.lease_s = lease_s
        self.on_dead = on_dead
        self.ignore = ignore  # this process's own name: never judged by itself
        self.stream = f"KV_{kv._name}"  # the bucket's stream (nats-py names it so)
        self.last_beat: dict[str, float] = {}  # name -> monotonic time of its last beat
        self.beats: dict[str, Beat] = {}  # name -> its last beat
        self.revisions: dict[str, int] = {}  # name -> KV revision of its last beat seen
        self._seeing_since = time.monotonic()  # no name is judged on beats older than this
        self._watcher: KeyValue.KeyWatcher | None = None
        self._following: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._rewatching: asyncio.Task[None] | None = None
        # Loops end on this flag, not only on cancel: Python 3.11's wait_for (inside every
        # nats-py request) swallows a cancel that arrives with the reply, and the loop goes on.
        self._stopped = False

    async def start(self) -> None:
        await self._watch()
        self._checking = asyncio.create_task(self._check())
        self.bus.after_reconnect(self._on_reconnect)

    async def _watch(self) -> None:
        self._seeing_since = time.monotonic()
        self._watcher = await self.kv.watch(f"{self.prefix}.*")
        self._following = asyncio.create_task(self._follow(self._watcher))

    async def _on_reconnect(self) -> None:
        if self._rewatching is None or self._rewatching.done():
            self._rewatching = asyncio.create_task(self._rewatch())

    async def _rewatch(self) -> None:
        """A NATS restart drops the watch's consumer: make it again until that works."""
        if self._following is not None:
            self._following.cancel()
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()  # type: ignore[no-untyped-call]
        while not self._stopped:
            try:
                await self._watch()
                return
            except Exception as exc:  # the bucket or JetStream not back yet
                log.warning("re-watching %s heartbeats failed, retrying: %s", self.prefix, exc)
                self._seeing_since = time.monotonic()
                await asyncio.sleep(self.lease_s / 3)

    def forget(self, name: str) -> None:
        self.last_beat.pop(name, None)
        self.beats.pop(name, None)
        self.revisions.pop(name, None)

    async def still_beating(self, name: str) -> bool | None:
        """Read the name's key now: True when it beat after the last beat seen here, False
        when it did not (or left), None when NATS cannot tell (blind: judge nobody)."""
        try:
            entry = await self.kv.get(f"{self.prefix}.{name}")
        except KeyNotFoundError:
            return False
        except Exception as exc:
            log.warning("reading %s heartbeat failed: %s", self.prefix, exc)
            return None
        if entry.operation in ("DEL", "PURGE"):
            return False
        seen = self.revisions.get(name, 0)
        if int(entry.revision or 0) > seen:
            return True
        return await self._bucket_moved_on(seen)

    async def _bucket_moved_on(self, revision: int) -> bool | None:
        """Did the bucket store anything after `revision` (another name's beat)? Then it
        stores beats and this name's silence is its own (False). If not, the bucket may be
        what is silent: a clustered bucket electing a new leader stores no beat for
        seconds, and every replica would look dead at once (None: judge nobody). Without
        any other writer there is nobody to fail over to anyway."""
        try:
            info = await self.bus.js.stream_info(self.stream)
        except Exception as exc:
            log.warning("reading the %s bucket's state failed: %s", self.prefix, exc)
            return None
        return False if int(info.state.last_seq or 0) > revision else None

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        while not self._stopped:
            try:
                entry = await watcher.updates(timeout=3600)  # type: ignore[no-untyped-call]
            except Exception:  # (a timeout just means nobody beat for an hour)
                continue
            if entry is None:
                continue
            name = entry.key.removeprefix(f"{self.prefix}.")
            if name == self.ignore:
                continue
            if entry.operation in ("DEL", "PURGE"):
                self.forget(name)  # a clean exit
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                beat = json.loads(entry.value or b"")
                age = max(0.0, time.time() - float(beat["t"]))
                # A fresh beat counts from now (clocks of two nodes differ a little); an old
                # one, replayed when the watch starts, from when it was written.
                self.last_beat[name] = time.monotonic() - (age if age > self.lease_s else 0.0)
                self.beats[name] = beat
                self.revisions[name] = max(self.revisions.get(name, 0), int(entry.revision or 0))

    async def _check(self) -> None:
        every = self.lease_s / 5
        while not self._stopped:
            asked = time.monotonic()
            await asyncio.sleep(every)
            now = time.monotonic()
            # Blind: cut off from NATS, or this loop was stalled (beats may sit unread).
            if not self.bus.nc.is_connected or now - asked > every + self.lease_s / 2:
                self._seeing_since = now
                continue
            await self.judge(now)

    async def judge(self, now: float) -> None:
        """One round: every name silent for a lease is read once more, then declared dead
        only if it really did not beat."""
        for name, seen in list(self.last_beat.items()):
            if now - max(seen, self._seeing_since) <= self.lease_s:
                continue
            beating = await self.still_beating(name)
            if beating is None:  # blind: nobody is judged on this round
                self._seeing_since = time.monotonic()
                return
            if name not in self.last_beat:  # it left cleanly while we read
                continue
            if beating or (self.answers is not None and await self.answers(name)):
                self.last_beat[name] = time.monotonic()  # it beats (read late), or answers
                LATE_BEATS.labels(self.prefix).inc()
                continue
            self.forget(name)
            REPLICAS_LOST.labels(self.prefix).inc()
            try:
                await self.on_dead(name)
            except Exception:
                log.exception("handling a lost replica failed", extra={"replica": name})

    async def stop(self) -> None:
        self._stopped = True
        for task in (self._following, self._checking, self._rewatching):
            if task is not None:
                task.cancel()
