"""STT crash failover, the gateway's half: notice an STT replica that stopped beating and
re-announce the calls it owned here, with their checkpoints, so another replica replays the
audio it missed from JetStream and no caller word is lost (services/stt/voxbus_stt/lease.py).

A replica that exits cleanly deletes its heartbeat (it handed its calls over itself), so
only a silent disappearance (kill -9, OOM, a lost node) triggers this.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from voxbus.v1.call_pb2 import CallAnnounce
from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_gateway.liveness import Heartbeats

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)


class SttWatch:
    def __init__(self, bus: Bus, lease_s: float, calls: Callable[[], Iterable[Call]]) -> None:
        self.bus = bus
        self.lease_s = lease_s
        self.calls = calls
        self.beats: Heartbeats | None = None

    async def start(self) -> None:
        kv = await self.bus.stt_kv()
        self.beats = Heartbeats(self.bus, kv, "replica", self.lease_s,
                                lambda name: self._fail_over(kv, name))
        await self.beats.start()

    def stt_full(self) -> bool:
        """Every live STT replica is at its call limit (admission control). With none
        known yet a call is admitted and waits in the call queue for one."""
        if self.beats is None or not self.beats.beats:
            return False
        return sum(max(0, int(b.get("max", 1)) - int(b.get("calls", 0)))
                   for b in self.beats.beats.values()) <= 0

    async def _fail_over(self, kv: KeyValue, dead: str) -> None:
        """All of the dead replica's calls at once: they wait on NATS, not on each other."""
        await asyncio.gather(*(self._re_announce(kv, call, dead) for call in list(self.calls())
                               if not call.ending))

    async def _re_announce(self, kv: KeyValue, call: Call, dead: str) -> None:
        try:
            entry = await kv.get(f"call.{call.call_id}")
            doc = json.loads(entry.value or b"{}")
        except (KeyNotFoundError, ValueError):
            return
        if doc.get("owner") != dead:
            return
        seq, after = int(doc.get("seq", 0)), int(doc.get("after", 0))
        announce = CallAnnounce(
            meta=self.bus.meta(call.call_id, 0, subjects.WORK_CALLS), sample_rate=call.rate,
            edge=call.edge.name, gateway_id=call.gateway_id,
            resume_stream_seq=max(1, seq), resume_after_utterance=after)
        try:
            await self.bus.publish_acked(subjects.WORK_CALLS, announce,
                                         msg_id=f"failover-{call.call_id}-{dead}-{seq}")
        except Exception:  # (one call's failure must not stop the others')
            log.exception("re-announcing a call failed", extra={"call_id": call.call_id})
            return
        log.warning("STT replica gone: call re-announced",
                    extra={"call_id": call.call_id, "replica": dead, "resume_seq": seq})

    async def stop(self) -> None:
        if self.beats is not None:
            await self.beats.stop()
