"""STT crash failover, the gateway's half: notice an STT replica that stopped beating and
hand the calls it owned here, with their checkpoints, to the survivors, so they replay the
audio it missed from JetStream and no caller word is lost (services/stt/voxbus_stt/lease.py).
Each call goes to one survivor chosen by the load in the heartbeats, paced and newest
speech first (failover_plan.py); a survivor that refuses or does not answer leaves the
call to the work queue, where any replica takes it.

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

from voxbus.v1.call_pb2 import CallAnnounce, CallTakeReply
from voxbus_common import subjects
from voxbus_common.bus import Bus, decode
from voxbus_gateway.failover_plan import Load, Orphan, assign, by_survivor
from voxbus_gateway.liveness import Heartbeats

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)

# Take-overs in flight per survivor: each answers once its replay reached the live audio
# (or after 0.3 s: voxbus_stt/worker.py), newest speech first. 4 with a 2 s bound starved
# the last of 100 calls for 20-50 s on a saturated survivor (bench.soak at 200 calls).
TAKE_WINDOW = 8
TAKE_TIMEOUT_S = 5.0  # a survivor that does not answer in this time: the work queue
CHECKPOINT_READS = 5  # tries to read a call's checkpoint (each up to nats-py's timeout)
PROBE_TIMEOUT_S = 1.0  # a silent replica that cannot answer a probe in this time is dead


def _orphan(call: Call) -> Orphan:
    talk = call.conversation
    return Orphan(call.call_id, talk.heard_utterance > talk.policy.finalized_utterance,
                  talk.caller_heard_at)


class SttWatch:
    def __init__(self, bus: Bus, lease_s: float, calls: Callable[[], Iterable[Call]]) -> None:
        self.bus = bus
        self.lease_s = lease_s
        self.calls = calls
        self.beats: Heartbeats | None = None
        self._spreading: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        kv = await self.bus.stt_kv()
        self.beats = Heartbeats(self.bus, kv, "replica", self.lease_s,
                                lambda name: self._fail_over(kv, name), answers=self._answers)
        await self.beats.start()

    def stt_full(self) -> bool:
        """Every live STT replica is at its call limit (admission control). With none
        known yet a call is admitted and waits in the call queue for one."""
        if self.beats is None or not self.beats.beats:
            return False
        return sum(max(0, int(b.get("max", 1)) - int(b.get("calls", 0)))
                   for b in self.beats.beats.values()) <= 0

    async def _answers(self, replica: str) -> bool:
        """A silent replica's last chance: an empty take-over request (a probe) answered
        means it lives and its beats were late (a saturated NATS, a starved thread). A
        killed one has no subscription: "no responders" comes at once, no time is lost."""
        try:
            await self.bus.nc.request(subjects.stt_take(replica), b"", timeout=PROBE_TIMEOUT_S)
        except Exception:  # no responders, or no answer in time
            return False
        log.warning("STT replica silent but answering: not failed over",
                    extra={"replica": replica})
        return True

    async def _fail_over(self, kv: KeyValue, dead: str) -> None:
        """Spread in the background: the judge of the other replicas must not wait on it."""
        task = asyncio.create_task(self._spread(kv, dead))
        self._spreading.add(task)
        task.add_done_callback(self._spreading.discard)

    async def _spread(self, kv: KeyValue, dead: str) -> None:
        """The dead replica's calls here, to the survivors by their heartbeat load, newest
        speech first, `TAKE_WINDOW` at a time per survivor (failover_plan.py)."""
        calls = [c for c in list(self.calls()) if not c.ending]
        points = await asyncio.gather(*(self._checkpoint(kv, c, dead) for c in calls))
        orphans = {c.call_id: (c, p) for c, p in zip(calls, points, strict=True) if p is not None}
        if not orphans:
            return
        beats = self.beats.beats if self.beats is not None else {}
        survivors = {name: Load(int(b.get("calls", 0)), int(b.get("max", 1)))
                     for name, b in beats.items()}
        plan = assign([_orphan(c) for c, _ in orphans.values()], survivors)
        log.warning("STT replica gone: %d calls to %d survivors", len(orphans), len(survivors),
                    extra={"replica": dead})
        if not plan:  # nobody beats: the queue holds them for the next replica to start
            await asyncio.gather(*(self._queue(c, dead, *p) for c, p in orphans.values()))
            return
        await asyncio.gather(*(self._lane(name, [orphans[o.call_id] for o in lane], dead)
                               for name, lane in by_survivor(plan).items()))

    async def _lane(self, survivor: str, lane: list[tuple[Call, tuple[int, int]]],
                    dead: str) -> None:
        """One survivor's share, in order, `TAKE_WINDOW` take-overs in flight at most."""
        todo = iter(lane)

        async def sender() -> None:
            for call, (seq, after) in todo:
                await self._give(survivor, call, dead, seq, after)

        await asyncio.gather(*(sender() for _ in range(TAKE_WINDOW)))

    async def _checkpoint(self, kv: KeyValue, call: Call, dead: str) -> tuple[int, int] | None:
        """Where the dead owner stopped (stream seq, last final utterance), if it owned it.
        A read that fails (a saturated NATS) is tried again: a call skipped stays deaf."""
        for attempt in range(CHECKPOINT_READS):
            try:
                entry = await kv.get(f"call.{call.call_id}")
                doc = json.loads(entry.value or b"{}")
                break
            except (KeyNotFoundError, ValueError):
                return None
            except Exception as exc:
                log.warning("reading a call checkpoint failed (%d): %s", attempt + 1, exc,
                            extra={"call_id": call.call_id})
                await asyncio.sleep(0.2)
        else:
            log.error("call checkpoint unreadable: not failed over",
                      extra={"call_id": call.call_id})
            return None
        if doc.get("owner") != dead:
            return None
        return int(doc.get("seq", 0)), int(doc.get("after", 0))

    def _announce(self, call: Call, subject: str, seq: int, after: int) -> CallAnnounce:
        return CallAnnounce(
            meta=self.bus.meta(call.call_id, 0, subject), sample_rate=call.rate,
            edge=call.edge.name, gateway_id=call.gateway_id,
            resume_stream_seq=max(1, seq), resume_after_utterance=after)

    async def _give(self, survivor: str, call: Call, dead: str, seq: int, after: int) -> None:
        """Ask one survivor to take the call; it answers when its replay caught up. Refused
        or unanswered: the work queue (any replica, as before)."""
        subject = subjects.stt_take(survivor)
        data = self._announce(call, subject, seq, after).SerializeToString()
        reason = ""
        try:
            msg = await self.bus.nc.request(subject, data, timeout=TAKE_TIMEOUT_S)
            reply = decode(CallTakeReply, msg.data)
            if reply.taken:
                log.warning("STT call handed to a survivor", extra={
                    "call_id": call.call_id, "replica": survivor, "resume_seq": seq,
                    "caught_up": reply.caught_up})
                return
            reason = reply.reason
        except Exception as exc:  # no answer, or not a CallTakeReply
            reason = repr(exc)
        log.warning("survivor did not take the call (%s): to the work queue", reason,
                    extra={"call_id": call.call_id, "replica": survivor})
        await self._queue(call, dead, seq, after)

    async def _queue(self, call: Call, dead: str, seq: int, after: int) -> None:
        announce = self._announce(call, subjects.WORK_CALLS, seq, after)
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
        for task in list(self._spreading):
            task.cancel()
