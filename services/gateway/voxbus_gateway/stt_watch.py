"""STT crash failover, the gateway's half: notice an STT replica that stopped beating and
re-announce the calls it owned here, with their checkpoints, so another replica replays the
audio it missed from JetStream and no caller word is lost (services/stt/voxbus_stt/lease.py).

A replica that exits cleanly deletes its heartbeat (it handed its calls over itself), so
only a silent disappearance (kill -9, OOM, a lost node) triggers this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from voxbus.v1.call_pb2 import CallAnnounce
from voxbus_common import subjects
from voxbus_common.bus import Bus

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)


class SttWatch:
    def __init__(self, bus: Bus, lease_s: float, calls: Callable[[], Iterable[Call]]) -> None:
        self.bus = bus
        self.lease_s = lease_s
        self.calls = calls
        self.last_beat: dict[str, float] = {}  # replica -> monotonic time of its last beat
        self.free: dict[str, int] = {}  # replica -> calls it can still take (its last beat)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        kv = await self.bus.stt_kv()
        watcher = await kv.watch("replica.*")
        self._tasks = [asyncio.create_task(self._follow(watcher)),
                       asyncio.create_task(self._check(kv))]

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=3600)  # type: ignore[no-untyped-call]
            except Exception:  # (a timeout just means nobody beat for an hour)
                continue
            if entry is None:
                continue
            name = entry.key.removeprefix("replica.")
            if entry.operation in ("DEL", "PURGE"):
                self.last_beat.pop(name, None)  # a clean exit: it handed its calls over
                self.free.pop(name, None)
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                beat = json.loads(entry.value or b"")
                age = max(0.0, time.time() - float(beat["t"]))
                self.last_beat[name] = time.monotonic() - age
                self.free[name] = int(beat.get("max", 1)) - int(beat.get("calls", 0))

    async def _check(self, kv: KeyValue) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            now = time.monotonic()
            for name, seen in list(self.last_beat.items()):
                if now - seen > self.lease_s:
                    self.last_beat.pop(name, None)
                    self.free.pop(name, None)
                    try:
                        await self._fail_over(kv, name)
                    except Exception:
                        log.exception("STT failover failed", extra={"replica": name})

    def stt_full(self) -> bool:
        """Every live STT replica is at its call limit (admission control). With none
        known yet a call is admitted and waits in the call queue for one."""
        return bool(self.free) and sum(max(0, f) for f in self.free.values()) <= 0

    async def _fail_over(self, kv: KeyValue, dead: str) -> None:
        for call in list(self.calls()):
            if call.ending:
                continue
            try:
                entry = await kv.get(f"call.{call.call_id}")
                doc = json.loads(entry.value or b"{}")
            except (KeyNotFoundError, ValueError):
                continue
            if doc.get("owner") != dead:
                continue
            seq, after = int(doc.get("seq", 0)), int(doc.get("after", 0))
            announce = CallAnnounce(
                meta=self.bus.meta(call.call_id, 0, subjects.WORK_CALLS), sample_rate=call.rate,
                edge=call.edge.name, gateway_id=call.gateway_id,
                resume_stream_seq=max(1, seq), resume_after_utterance=after)
            await self.bus.publish_acked(subjects.WORK_CALLS, announce,
                                         msg_id=f"failover-{call.call_id}-{dead}-{seq}")
            log.warning("STT replica gone: call re-announced",
                        extra={"call_id": call.call_id, "replica": dead, "resume_seq": seq})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
