"""One call's streaming recognition: audio frames in, VAD events and transcripts out.

Frames arrive through an ordered JetStream consumer, so a session (or a replacement worker)
reads the call's audio from the stream in order (and directly while the stream stalls:
direct_audio.py). Each utterance gets a recognition stream from the provider (a batch
provider through batch_stream.py) that is fed while the caller speaks; finals are published
strictly in utterance order, and a partial is dropped once its utterance is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from voxbus.v1.audio_pb2 import AudioFrame, AudioResend
from voxbus.v1.speech_pb2 import TranscriptWord, VadEvent
from voxbus_common import subjects
from voxbus_common.bus import BadMessage, Bus, decode, now_ns
from voxbus_common.js_reply import stream_sequence
from voxbus_common.logs import call_id_var
from voxbus_common.metrics import STT_DECODE
from voxbus_common.providers import EndOfTurnDetector, Recognition, StreamingSpeechToText
from voxbus_common.telemetry import tracer
from voxbus_stt.direct_audio import DirectAudio
from voxbus_stt.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechEnded,
    SpeechOnset,
    SpeechResumed,
    SpeechStarted,
    TurnCheck,
)
from voxbus_stt.frame_index import FrameIndex
from voxbus_stt.frame_order import Gap
from voxbus_stt.frame_repair import FrameRepair
from voxbus_stt.session_output import SessionOutput
from voxbus_stt.turn_cues import text_cue
from voxbus_stt.utterance_feed import UtteranceFeed

log = logging.getLogger(__name__)

RESUBSCRIBE_TRIES = 60  # ~1 s apart: a minute for the cluster to elect its leaders
LIVE_NS = 300_000_000  # a frame sent this recently is live: a take-over's replay caught up
RESUBSCRIBE_WAIT_S = 1.5  # per JetStream request (its default, 5 s, slept through elections)


@dataclass(frozen=True)
class _Final:
    """An ended utterance waiting for its final text, published in utterance order."""

    end: SpeechEnded
    text: asyncio.Task[Recognition]
    started: float  # perf_counter at the endpoint: the final's decode_ms counts from here
    origin_ms: int  # call-audio time of the stream's first byte (word timings)


class CallSession:
    """Owns recognition for one call on this worker."""

    def __init__(
        self,
        bus: Bus,
        call_id: str,
        endpointer: Endpointer,
        stt: StreamingSpeechToText,
        pool: Executor,
        idle_timeout_s: float = 30.0,
        speculate_after_ms: int = 96,
        resume_seq: int = 0,
        resume_after_utterance: int = 0,
        detector: EndOfTurnDetector | None = None,
        detector_pool: Executor | None = None,
        text_cues: bool = True,
    ) -> None:
        self.bus = bus
        self.call_id = call_id
        self.endpointer = endpointer
        self.stt = stt
        self.pool = pool
        self.idle_timeout_s = idle_timeout_s
        self.speculate_after_ms = speculate_after_ms
        self.sample_rate = endpointer.vad.sample_rate
        self.detector = detector
        self.detector_pool = detector_pool or pool
        self.text_cues = text_cues  # read the words at a pause (English)
        self._verdicts: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None
        self._finals: asyncio.Queue[_Final | None] = asyncio.Queue()
        self._feed = UtteranceFeed(stt, endpointer, self._interim)  # the utterance's stream
        # The text at a pause (`stream.pause()`), keyed by (utterance, end of voicing): the
        # turn cues read it and it goes out as a stable partial while the silence lasts.
        self._spec: tuple[int, int, asyncio.Task[str]] | None = None
        self._stable_task: asyncio.Task[None] | None = None
        self._finalized_uid = resume_after_utterance
        self._resume_seq = resume_seq  # a handover: where the previous worker stopped
        self._aligned = False
        self._frames = FrameIndex(self.sample_rate)  # what a checkpoint resumes from
        self._unfinished: dict[int, int] = {}  # utterance -> start ms, until its final is out
        self._last_frame = time.monotonic()
        self._closing = False
        self._seq_seen = 0
        self._repair = FrameRepair(self._ask_again, self._process)
        self._direct = DirectAudio(
            lambda cb: self.bus.subscribe(subjects.audio_in(call_id), cb), self._on_direct_frame,
            backlog=lambda: self._sub.pending_msgs if self._sub is not None else 0)
        self._resend_subject = subjects.audio_resend(call_id)
        self._drain_to = 0
        self._drained = asyncio.Event()
        self.closed = asyncio.Event()
        self.caught_up = asyncio.Event()  # a frame came live, not replayed (a take-over waits)
        self.handed_over = False  # closed for another replica to carry on, not call ended
        self._tasks: list[asyncio.Task[None]] = []
        self.out = SessionOutput(bus, call_id)
        self._interims: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        call_id_var.set(self.call_id)
        self._tasks.append(asyncio.create_task(self._final_loop()))
        self._tasks.append(asyncio.create_task(self._idle_watch()))
        self._sub = await self.bus.ordered(subjects.audio_in(self.call_id), self._on_frame,
                                           start_seq=self._resume_seq)
        self._direct.start()
        log.info("session started")

    async def _on_frame(self, msg: Msg) -> None:
        """A frame from the audio stream."""
        frame = self._valid_frame(msg)
        if frame is None:
            return
        self._direct.from_stream(frame.meta.seq)
        await self._repair.push(frame, stream_sequence(msg.reply))

    async def _on_direct_frame(self, msg: Msg) -> None:
        """A frame read straight off the subject while the stream stalls."""
        frame = self._valid_frame(msg)
        if frame is None:
            return
        self._direct.from_direct(frame.meta.seq)
        await self._repair.push(frame, 0)

    def _valid_frame(self, msg: Msg) -> AudioFrame | None:
        if self._closing:
            return None
        try:
            frame = decode(AudioFrame, msg.data)
        except BadMessage as exc:
            log.warning("bad audio frame dropped: %s", exc)
            return None
        if frame.sample_rate != self.sample_rate or len(frame.pcm) % 2:
            log.warning("audio frame with wrong format dropped", extra={"rate": frame.sample_rate})
            return None
        return frame

    async def _ask_again(self, gap: Gap) -> None:
        """Ask the call's gateway for frames the audio stream missed (frame_repair.py)."""
        ask = AudioResend(meta=self.bus.meta(self.call_id, 0, self._resend_subject),
                          from_seq=gap.first, to_seq=gap.last)
        await self.bus.publish(self._resend_subject, ask, traced=False)

    async def _process(self, frame: AudioFrame, stream_seq: int) -> None:
        """One frame, in the order the caller spoke it."""
        self._last_frame = time.monotonic()
        if not self._aligned:  # audio time is the call's, wherever this worker came in
            self.endpointer.resume(frame.stream_offset_ms, self._finalized_uid)
            self._aligned = True
        if stream_seq:
            self._frames.add(frame.stream_offset_ms, stream_seq, len(frame.pcm))
        self._seq_seen = max(self._seq_seen, frame.meta.seq)
        if not self.caught_up.is_set() and now_ns() - frame.meta.sent_unix_ns < LIVE_NS:
            self.caught_up.set()
        if self._drain_to and self._seq_seen >= self._drain_to:
            self._drained.set()
        for event in self.endpointer.push(frame.pcm):
            await self._handle(event)
        self._feed.feed()
        self._maybe_speculate()

    async def _handle(self, event: EndpointEvent) -> None:
        if isinstance(event, SpeechOnset):
            await self.out.vad(VadEvent.SPEECH_ONSET, event.onset_ms, event.utterance_id)
        elif isinstance(event, SpeechStarted):
            await self.out.vad(VadEvent.SPEECH_START, event.start_ms, event.utterance_id)
            self._unfinished[event.utterance_id] = event.start_ms
            self._feed.open(event.utterance_id)
        elif isinstance(event, TurnCheck):
            task = asyncio.create_task(self._judge(event))
            self._verdicts.add(task)
            task.add_done_callback(self._verdicts.discard)
        elif isinstance(event, SpeechResumed):
            await self.out.vad(VadEvent.SPEECH_RESUMED, event.offset_ms, event.utterance_id)
        else:
            await self.out.vad(VadEvent.SPEECH_END, event.end_ms, event.utterance_id)
            self._finals.put_nowait(self._finish(event))

    async def _judge(self, check: TurnCheck) -> None:
        """Ask the end-of-turn model about this pause, and read the words decoded at it
        (turn_cues.py); the verdict may end the turn."""
        probability: float | None = None
        if self.detector is not None:
            window = int(self.detector.window_s * self.sample_rate) * 2
            try:
                with STT_DECODE.labels("end_of_turn").time():
                    probability = await asyncio.get_running_loop().run_in_executor(
                        self.detector_pool, self.detector.completion_probability,
                        check.pcm[-window:], self.sample_rate)
            except Exception as exc:  # the VAD hangover decides this pause instead
                log.warning("end-of-turn model failed: %s", exc)
        cue = await self._words_cue(check.key)
        if self._closing:
            return
        log.debug("end-of-turn verdict", extra={"utterance": check.utterance_id,
                                                "probability": probability, "cue": cue})
        ended = self.endpointer.verdict(check.key, probability, cue)
        if ended is not None:
            await self._handle(ended)

    async def _words_cue(self, key: tuple[int, int]) -> str | None:
        """The cue in the words decoded at this pause (the speculative decode, which the
        final reuses); None without a decode or in a language without cues."""
        spec = self._spec
        if not self.text_cues or spec is None or spec[:2] != key:
            return None
        try:
            return text_cue(await asyncio.shield(spec[2]))
        except Exception:  # (cancelled when speech came back; a failed decode: no cue)
            return None

    def _interim(self, utterance_id: int, text: str) -> None:
        """The stream's hypothesis so far: a partial, unless the utterance is final."""
        if utterance_id > self._finalized_uid and text and not self._closing:
            task = asyncio.create_task(
                self.out.transcript(utterance_id, False, text, 0, 0, 0, 0.0))
            self._interims.add(task)
            task.add_done_callback(self._interims.discard)

    def _finish(self, end: SpeechEnded) -> _Final:
        started = time.perf_counter()
        spec, self._spec = self._spec, None
        if spec is not None and spec[:2] != (end.utterance_id, end.end_ms):
            spec[2].cancel()  # speech came back after that pause: its text is out of date
        text, origin_ms = self._feed.finish(end)
        return _Final(end, text, started, origin_ms)

    def _maybe_speculate(self) -> None:
        ep = self.endpointer
        if not ep.in_speech or ep.silence_ms < self.speculate_after_ms:
            return
        key = (ep.utterance_id, ep.last_voiced_end_ms)
        if self._spec is not None and self._spec[:2] == key:
            return
        task = self._feed.pause()
        if task is None:
            return
        self._spec = (*key, task)
        task.add_done_callback(lambda t: self._publish_stable(key, t))

    def _publish_stable(self, key: tuple[int, int], task: asyncio.Task[str]) -> None:
        """Announce the speculative text as a stable partial while the silence lasts."""
        ep = self.endpointer
        if task.cancelled() or task.exception() is not None or not task.result():
            return
        if ep.in_speech and (ep.utterance_id, ep.last_voiced_end_ms) != key:
            return  # speech resumed: this text is already out of date
        if key[0] <= self._finalized_uid:
            return
        self._stable_task = asyncio.get_running_loop().create_task(
            self._publish_stable_now(key, task.result()))

    async def _publish_stable_now(self, key: tuple[int, int], text: str) -> None:
        if key[0] > self._finalized_uid:  # the final may have overtaken us meanwhile
            await self.out.transcript(key[0], False, text, 0, key[1], 0, 0.0, stable=True)

    async def _final_loop(self) -> None:
        while True:
            item = await self._finals.get()
            if item is None:
                break
            event = item.end
            with tracer().start_as_current_span("stt.final", attributes={
                    "voxbus.utterance": event.utterance_id, "voxbus.stt": self.stt.name}):
                try:
                    recognized = await item.text
                except Exception:
                    log.exception("final transcription failed")
                    recognized = Recognition("")
            decode_ms = (time.perf_counter() - item.started) * 1000.0
            self._finalized_uid = event.utterance_id
            words = [TranscriptWord(text=w.text, start_ms=item.origin_ms + w.start_ms,
                                    end_ms=item.origin_ms + w.end_ms) for w in recognized.words]
            await asyncio.shield(self.out.transcript(  # a handover never cuts it off
                event.utterance_id, True, recognized.text, event.start_ms, event.end_ms,
                time.time_ns(), decode_ms, end_of_turn=event.reason,
                probability=event.probability, words=words,
            ))
            log.info("final transcript", extra={"utterance": event.utterance_id,
                                                "decode_ms": round(decode_ms),
                                                "end_of_turn": event.reason})
            self._unfinished.pop(event.utterance_id, None)

    async def _idle_watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(min(5.0, self.idle_timeout_s))
            if time.monotonic() - self._last_frame > self.idle_timeout_s:
                log.warning("no audio for %.0f s: closing session", self.idle_timeout_s)
                await self.close()

    async def finish(self, last_audio_seq: int, timeout_s: float = 5.0) -> None:
        """The caller is gone: process audio up to `last_audio_seq`, then close."""
        if last_audio_seq and self._seq_seen < last_audio_seq and not self._closing:
            self._drain_to = last_audio_seq
            await self._repair.drain_to(last_audio_seq)
            try:
                await asyncio.wait_for(self._drained.wait(), timeout=timeout_s)
            except TimeoutError:
                log.warning("audio up to seq %d not seen (last %d); closing anyway",
                            last_audio_seq, self._seq_seen)
        await self.close()

    async def close(self) -> None:
        """Flush the utterance in progress, publish its final, then report STREAM_CLOSED."""
        if self._closing:
            return
        self._closing = True
        self._repair.stop()
        await self._direct.close()
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone
                await self._sub.unsubscribe()
        last = self.endpointer.flush()
        if last is not None:
            await self.out.vad(VadEvent.SPEECH_END, last.end_ms, last.utterance_id)
            self._finals.put_nowait(self._finish(last))
        self._feed.drop()
        self._finals.put_nowait(None)
        final_task = self._tasks[0]
        try:
            await asyncio.wait_for(final_task, timeout=30.0)
        except TimeoutError:
            log.error("final transcription did not finish in time")
        await self.out.vad(VadEvent.STREAM_CLOSED, 0, self.endpointer.utterance_id)
        for task in (*self._tasks[1:], *self.out.repeats):
            if task is not asyncio.current_task():
                task.cancel()
        self.bus.forget_subjects(self.call_id)
        self.closed.set()
        log.info("session closed")

    async def resubscribe(self) -> None:
        """NATS came back: read the call's audio again from where this session was. A
        restarted server lost the in-memory audio stream and numbers it anew (read it from
        its start); after a partition the stream is intact (read on after the last frame).
        The old consumer is kept until the new one exists: in a cluster nats-py may revive
        it sooner (frames read twice are dropped by their numbers)."""
        if self._closing:
            return
        old = self._sub
        for _ in range(RESUBSCRIBE_TRIES):  # a cluster electing leaders refuses for seconds
            if self._closing:
                return
            try:
                start = await asyncio.wait_for(self._resume_point(), RESUBSCRIBE_WAIT_S)
                self._sub = await asyncio.wait_for(self.bus.ordered(
                    subjects.audio_in(self.call_id), self._on_frame, start_seq=start),
                    RESUBSCRIBE_WAIT_S)
                if old is not None:
                    with contextlib.suppress(Exception):
                        await old.unsubscribe()
            except Exception as exc:
                log.warning("audio not resubscribed yet (%s): retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            log.info("audio resubscribed after reconnect", extra={"start_seq": start})
            return
        log.error("audio could not be resubscribed: the call's recognition stops here")

    async def _resume_point(self) -> int:
        """The stream sequence after the last frame read, or 0 (the stream's start) when the
        stream is new. Frames read twice are dropped by their numbers (frame_order.py)."""
        last = self._frames.last[1]
        info = await self.bus.js.stream_info("VB_AUDIO")
        if last and info.state.last_seq >= last:
            return last + 1
        self._frames.clear()  # old sequence numbers mean nothing in a new stream
        return 0

    def checkpoint(self) -> tuple[int, int]:
        """Where another worker would carry on: (stream sequence, last final utterance) —
        the start of the oldest utterance not yet final (pre-roll included), or between
        utterances enough for one just beginning. Written to the lease every second."""
        cfg = self.endpointer.cfg
        unfinished = [start for uid, start in self._unfinished.items()
                      if uid > self._finalized_uid]  # (a final being published is done)
        if not self._frames:
            return self._resume_seq, self._finalized_uid
        if unfinished:
            resume_ms = min(unfinished) - cfg.pre_roll_ms
        else:
            resume_ms = self._frames.end_ms - cfg.pre_roll_ms - cfg.min_speech_ms
        seq = self._frames.seq_at(resume_ms)
        return seq, self._finalized_uid

    async def handover(self) -> tuple[int, int]:
        """Stop without a word to the gateway (this worker is shutting down, or lost the
        call's lease) and say where another worker carries on (`checkpoint`)."""
        seq, after = self.checkpoint()
        self._closing = self.handed_over = True
        self._repair.stop()
        await self._direct.close()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        spec = self._spec[2] if self._spec else None
        self._feed.cancel_all()
        for task in (*self._tasks, self._stable_task, spec, *self._verdicts, *self.out.repeats,
                     *self._interims):
            if task is not None:
                task.cancel()
        self.bus.forget_subjects(self.call_id)
        self.closed.set()
        log.info("session handed over", extra={"resume_seq": seq, "after_utterance": after})
        return seq, after
