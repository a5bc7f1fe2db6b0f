"""Who is alive: heartbeats in a KV bucket (`<prefix>.<name>` = {"t": unix time, ...}),
watched. A name that stops beating for `lease_s` is declared dead once; a name whose key is
deleted left cleanly and is simply forgotten. Used for STT replicas (stt_watch.py) and for
gateway replicas (gateway_watch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

Beat = dict[str, Any]


class Heartbeats:
    def __init__(self, kv: KeyValue, prefix: str, lease_s: float,
                 on_dead: Callable[[str], Awaitable[None]]) -> None:
        self.kv = kv
        self.prefix = prefix
        self.lease_s = lease_s
        self.on_dead = on_dead
        self.last_beat: dict[str, float] = {}  # name -> monotonic time of its last beat
        self.beats: dict[str, Beat] = {}  # name -> its last beat
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        watcher = await self.kv.watch(f"{self.prefix}.*")
        self._tasks = [asyncio.create_task(self._follow(watcher)),
                       asyncio.create_task(self._check())]

    def forget(self, name: str) -> None:
        self.last_beat.pop(name, None)
        self.beats.pop(name, None)

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=3600)  # type: ignore[no-untyped-call]
            except Exception:  # (a timeout just means nobody beat for an hour)
                continue
            if entry is None:
                continue
            name = entry.key.removeprefix(f"{self.prefix}.")
            if entry.operation in ("DEL", "PURGE"):
                self.forget(name)  # a clean exit
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                beat = json.loads(entry.value or b"")
                age = max(0.0, time.time() - float(beat["t"]))
                self.last_beat[name] = time.monotonic() - age
                self.beats[name] = beat

    async def _check(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            now = time.monotonic()
            for name, seen in list(self.last_beat.items()):
                if now - seen > self.lease_s:
                    self.forget(name)
                    try:
                        await self.on_dead(name)
                    except Exception:
                        log.exception("handling a lost replica failed", extra={"replica": name})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
