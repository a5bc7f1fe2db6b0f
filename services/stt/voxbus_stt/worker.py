"""STT worker: takes new calls from the work queue (each call lands on exactly one worker)
and runs a CallSession per call until the owning gateway says the call is ending. A worker
that is shutting down hands its calls over to another replica through the same queue; a
dead replica's calls come from the gateways directly (`vb.stt.take.<name>`, stt_watch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from voxbus.v1.call_pb2 import CallAnnounce, CallEvent, CallTakeReply
from voxbus_common import subjects
from voxbus_common.beacon import Beacon
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.config import SttService
from voxbus_common.logs import call_id_var
from voxbus_common.metrics import STT_SESSIONS
from voxbus_common.providers import (
    EndOfTurnDetector,
    SpeechToText,
    StreamingSpeechToText,
    VoiceActivityDetector,
)
from voxbus_common.subjects import STT_BUCKET
from voxbus_stt.batch_stream import as_streaming
from voxbus_stt.endpointer import Endpointer, EndpointerConfig
from voxbus_stt.lease import CallLease, replica_key
from voxbus_stt.session import CallSession
from voxbus_stt.vad_pool import VadPool

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 0.9  # how stale a failover's resume point may be (it replays from it)
CHECKPOINT_WRITERS = 16  # checkpoint writes in flight: 200 calls' rounds stay under a second
# A call handed to a replica that cannot take it (stalled, cut off: the server still holds
# its pull request) moves to another after this; a live one keeps it claimed (bus.py).
CALL_ACK_WAIT_S = 1.0
# Calls taken in parallel: a failover hands one replica all of a dead one's calls at once,
# and each take-over waits on NATS (lease write, audio consumer) more than on this CPU.
TAKE_CONCURRENCY = 8
# A direct take-over's answer waits at most this long for the replay to reach live audio:
# a fast survivor paces its gateways by its replays, a saturated one does not hold them up.
CATCH_UP_WAIT_S = 0.3
# Calls remembered as ended here, and endings of calls not (yet) taken here (every replica
# hears every call's end): seconds matter, so a bound that keeps a long-lived worker flat.
ENDED_KEPT = 2000


class AtCapacity(RuntimeError):
    """This worker runs its maximum number of calls; the work queue redelivers elsewhere."""


class SttWorker:
    def __init__(self, bus: Bus, settings: SttService, stt: SpeechToText | StreamingSpeechToText,
                 vad_factory: Callable[[], VoiceActivityDetector],
                 detector: EndOfTurnDetector | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.vads = VadPool(vad_factory)  # a detector per call held, reused after it
        self.detector = detector  # None: VAD-only endpointing
        self.sessions: dict[str, CallSession] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stt")
        self.stt = as_streaming(stt, self.pool, settings.stt_partial_interval_ms)
        # end-of-turn verdicts never queue behind transcription (a pause is judged at once)
        self.detector_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eot")
        self._ended: OrderedDict[str, None] = OrderedDict()  # the last ENDED_KEPT calls
        self._taking: set[str] = set()  # calls being set up (no await between check and add)
        # Endings seen before this worker got the call (the announcement may still be queued).
        self._early_endings: OrderedDict[str, int] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self.announces: dict[str, CallAnnounce] = {}
        self.leases: dict[str, CallLease] = {}
        self.kv: KeyValue | None = None
        self.stopping = False

    def _endpointer(self) -> Endpointer:
        s = self.settings
        cfg = EndpointerConfig(threshold=s.vad_threshold, onset_ms=s.vad_onset_ms,
                               min_speech_ms=s.vad_min_speech_ms,
                               hangover_ms=s.vad_hangover_ms, pre_roll_ms=s.vad_pre_roll_ms,
                               policy="model" if self.detector is not None else "vad",
                               ask_after_ms=s.eot_ask_after_ms, max_hold_ms=s.eot_max_hold_ms,
                               hold_ms=s.eot_hold_ms,
                               completion_threshold=s.eot_threshold,
                               min_silence_ms=s.eot_min_silence_ms,
                               resume_after_ms=s.stt_speculate_after_ms)
        return Endpointer(self.vads.take(), cfg)

    async def on_call(self, msg: Msg) -> None:
        announce = decode(CallAnnounce, msg.data)
        call_id = announce.meta.call_id
        subjects.audio_in(call_id)  # validates the id
        call_id_var.set(call_id)
        if self.stopping:  # (also its own handovers) the queue hands it to another replica
            raise AtCapacity("this worker is shutting down")
        if call_id in self.sessions or call_id in self._ended or call_id in self._taking:
            return  # (a redelivery or a re-announcement while this replica has the call)
        if len(self.sessions) + len(self._taking) >= self.settings.stt_max_calls:
            raise AtCapacity(f"{len(self.sessions)} calls")
        if announce.sample_rate != self.settings.bus_sample_rate:
            raise BadMessage(f"call announced at {announce.sample_rate} Hz; the bus carries "
                             f"{self.settings.bus_sample_rate} Hz")
        # Claimed before the first await: calls are taken TAKE_CONCURRENCY at a time, and a
        # redelivery of the same announcement (a starved replica acks late) must not start a
        # second session for the call while the first is still being set up.
        self._taking.add(call_id)
        try:
            await self._take(announce, call_id)
        finally:
            self._taking.discard(call_id)

    async def on_take(self, msg: Msg) -> None:
        """A gateway hands this replica one of a dead replica's calls (stt_watch.py). The
        answer waits for the replay to reach the live audio, which paces the gateway's next
        hand-over here; in a task, so the next one is not held behind it. An empty
        request is a gateway's liveness probe (stt_watch.py): answered at once."""
        if not msg.data:
            with contextlib.suppress(Exception):
                await msg.respond(CallTakeReply(reason="alive").SerializeToString())
            return
        self._spawn(self._take_directly(msg))

    async def _take_directly(self, msg: Msg) -> None:
        reply = CallTakeReply(taken=False)
        try:
            call_id = decode(CallAnnounce, msg.data).meta.call_id
            call_id_var.set(call_id)
            await self.on_call(msg)
            reply.taken = True
            session = self.sessions.get(call_id)
            if session is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.caught_up.wait(), CATCH_UP_WAIT_S)
                reply.caught_up = session.caught_up.is_set()
        except Exception as exc:  # refused: the gateway sends it to the work queue
            log.warning("direct take-over refused: %s", exc)
            reply.reason = str(exc) or type(exc).__name__
        with contextlib.suppress(Exception):  # (the gateway gave up waiting: it queued it)
            await msg.respond(reply.SerializeToString())

    async def _take(self, announce: CallAnnounce, call_id: str) -> None:
        if self.kv is not None:  # claim the call before reading its audio
            lease = CallLease(self.kv, call_id, self.bus.name)
            await lease.write(announce.resume_stream_seq, announce.resume_after_utterance)
            self.leases[call_id] = lease
        session = CallSession(self.bus, call_id, self._endpointer(), self.stt, self.pool,
                              speculate_after_ms=self.settings.stt_speculate_after_ms,
                              resume_seq=announce.resume_stream_seq,
                              resume_after_utterance=announce.resume_after_utterance,
                              detector=self.detector, detector_pool=self.detector_pool,
                              text_cues=self.settings.agent_language.split("-")[0] == "en")
        self.sessions[call_id] = session
        self.announces[call_id] = announce
        if announce.resume_stream_seq:
            log.info("call taken over", extra={"resume_seq": announce.resume_stream_seq})
        STT_SESSIONS.set(len(self.sessions))
        try:
            await session.start()
        except BaseException:  # (NATS too slow to make its audio consumer) no zombie left
            self.sessions.pop(call_id, None)  # behind: a redelivery must take it again
            self.announces.pop(call_id, None)
            self.leases.pop(call_id, None)  # (its checkpoint stays for the next taker)
            await session.handover()
            self.vads.give_back(session.endpointer.release_vad())
            STT_SESSIONS.set(len(self.sessions))
            raise
        self._spawn(self._reap(session))
        early = self._early_endings.pop(call_id, None)
        if early is not None:
            self._spawn(session.finish(early))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reap(self, session: CallSession) -> None:
        await session.closed.wait()
        self.sessions.pop(session.call_id, None)
        self.vads.give_back(session.endpointer.release_vad())
        self.announces.pop(session.call_id, None)
        lease = self.leases.pop(session.call_id, None)
        if lease is not None and not self.stopping:
            await lease.release()
        STT_SESSIONS.set(len(self.sessions))
        if session.handed_over:  # the call goes on elsewhere, and may come back here
            return
        self._ended[session.call_id] = None
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)

    async def _hand_over(self, session: CallSession) -> None:
        """Shutting down: another replica carries the call on from where this one stopped
        (a new announcement on the call work queue, with the resume point)."""
        call_id_var.set(session.call_id)
        seq, after = await session.handover()
        first = self.announces.get(session.call_id, CallAnnounce())
        announce = CallAnnounce(meta=self.bus.meta(session.call_id, 0, subjects.WORK_CALLS),
                                sample_rate=first.sample_rate or self.settings.bus_sample_rate,
                                edge=first.edge, gateway_id=first.gateway_id,
                                resume_stream_seq=seq, resume_after_utterance=after)
        await self.bus.publish_acked(subjects.WORK_CALLS, announce,
                                     msg_id=f"handover-{session.call_id}-{seq}")

    async def on_control(self, msg: Msg) -> None:
        try:
            event = decode(CallEvent, msg.data)
        except BadMessage as exc:
            log.warning("bad control event: %s", exc)
            return
        kind = event.WhichOneof("kind")
        if kind not in ("ending", "ended"):
            return
        call_id = event.meta.call_id
        session = self.sessions.get(call_id)
        last_seq = event.ending.last_audio_seq if kind == "ending" else 0
        if session is not None:
            call_id_var.set(call_id)
            self._spawn(session.finish(last_seq))
        elif kind == "ending" and call_id not in self._ended:
            self._early_endings[call_id] = last_seq
            while len(self._early_endings) > ENDED_KEPT:
                self._early_endings.popitem(last=False)

    async def _resubscribe_all(self) -> None:
        await asyncio.gather(*(s.resubscribe() for s in list(self.sessions.values())),
                             return_exceptions=True)

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Write each call's checkpoint, `CHECKPOINT_WRITERS` at a time. A call whose
        lease another replica took is dropped here without a word (no two owners)."""
        assert self.kv is not None
        while not stop.is_set():
            leases = iter(list(self.leases.items()))
            await asyncio.gather(*(self._write_leases(leases) for _ in range(CHECKPOINT_WRITERS)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECKPOINT_EVERY_S)

    async def _write_leases(self, leases: Iterator[tuple[str, CallLease]]) -> None:
        for call_id, lease in leases:
            session = self.sessions.get(call_id)
            try:
                if session is not None and not await lease.write(*session.checkpoint()):
                    self.leases.pop(call_id, None)
                    await session.handover()
            except Exception as exc:  # NATS away: the next round tries again
                log.warning("STT checkpoint update failed: %s", exc, extra={"call_id": call_id})

    @staticmethod
    async def _tick(stop: asyncio.Event, beacon: Beacon) -> None:
        """The loop is alive: the beacon beats on its own thread (beacon.py) while ticked.
        Its own task, so slow checkpoint writes (a saturated NATS) never silence it."""
        while not stop.is_set():
            beacon.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def run(self, stop: asyncio.Event) -> None:
        self.kv = await self.bus.stt_kv()
        self.bus.after_reconnect(self._resubscribe_all)
        beacon = Beacon(self.settings, self.bus.name, STT_BUCKET, replica_key(self.bus.name),
                        self.settings.stt_heartbeat_s, lambda: {
                            "calls": len(self.sessions),  # (gateways admit on it)
                            "max": self.settings.stt_max_calls})
        # the take-over door opens before the first beat: gateways pick survivors by beats
        await self.bus.subscribe(subjects.stt_take(self.bus.name), self.on_take)
        beacon.start()
        leases = asyncio.create_task(self._keep_leases(stop))
        ticks = asyncio.create_task(self._tick(stop, beacon))
        await self.bus.subscribe(subjects.CONTROL_ALL, self.on_control)
        worker = asyncio.create_task(self.bus.run_pull_worker(
            stream="VB_CALLS", durable="stt-workers", subject=subjects.WORK_CALLS,
            handler=self.on_call, concurrency=TAKE_CONCURRENCY, stop=stop,
            ack_wait_s=CALL_ACK_WAIT_S, max_deliver=50, failure_retries=49,
        ))
        await stop.wait()
        self.stopping = True
        if self.settings.stt_handover:
            results = await asyncio.gather(
                *(self._hand_over(s) for s in list(self.sessions.values())),
                return_exceptions=True)
            for failed in (r for r in results if isinstance(r, BaseException)):
                log.error("handover failed: %s", failed, exc_info=failed)
        else:
            await asyncio.gather(*(s.close() for s in list(self.sessions.values())),
                                 return_exceptions=True)
        await asyncio.gather(leases, ticks)
        await beacon.stop()
        with contextlib.suppress(Exception):  # a clean exit: the gateways need not fail over
            await self.kv.delete(replica_key(self.bus.name))
        await worker
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.detector_pool.shutdown(wait=False, cancel_futures=True)
