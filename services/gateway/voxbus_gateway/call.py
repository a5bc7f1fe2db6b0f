"""The one place that owns a call's state: caller audio out, turns in, playout, hang-up.

Turn model: each final, non-empty transcript opens turn N+1. Opening a turn cancels the
turn in flight (CancelTurn on the control subject makes all its LLM/TTS work stale
everywhere) and records what the caller actually heard of it. Everything the services send
back carries a turn id; anything not for the current turn is dropped here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from voxbus.v1.audio_pb2 import AudioChunk, AudioFrame
from voxbus.v1.call_pb2 import CallAnnounce, CallEvent, TurnTimings
from voxbus.v1.llm_pb2 import LlmRequest, TokenDelta
from voxbus.v1.speech_pb2 import Transcript, VadEvent
from voxbus_common import subjects
from voxbus_common.audio import Framer, frame_bytes
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.config import Settings
from voxbus_common.logs import call_id_var, turn_id_var
from voxbus_gateway.clock import AudioClock
from voxbus_gateway.edge import EdgeSink
from voxbus_gateway.playout import TurnPlayer

log = logging.getLogger(__name__)


def latency_breakdown(t: TurnTimings) -> dict[str, float | None]:
    """Milliseconds between the stages of a turn (None where a stage was not reached)."""

    def ms(a: int, b: int) -> float | None:
        return round((b - a) / 1e6, 1) if a and b else None

    return {
        "end_of_speech_to_final_transcript": ms(t.speech_end, t.final_transcript),
        "final_transcript_to_first_token": ms(t.final_transcript, t.first_token),
        "first_token_to_first_audio_chunk": ms(t.first_token, t.first_audio_chunk),
        "first_audio_chunk_to_first_audio_played": ms(t.first_audio_chunk, t.first_audio_played),
        "voice_to_voice": ms(t.speech_end, t.first_audio_played),
    }


@dataclass
class Turn:
    turn_id: int
    user_text: str
    player: TurnPlayer
    timings: TurnTimings = field(default_factory=TurnTimings)
    agent_text: str = ""
    llm_done: bool = False
    task: asyncio.Task[None] | None = None


class Call:
    def __init__(self, bus: Bus, settings: Settings, call_id: str, edge: EdgeSink,
                 gateway_id: str) -> None:
        self.bus = bus
        self.settings = settings
        self.call_id = call_id
        self.edge = edge
        self.gateway_id = gateway_id
        self.rate = settings.bus_sample_rate
        self.clock = AudioClock()
        self._framer = Framer(frame_bytes(self.rate))
        self._audio_subject = subjects.audio_in(call_id)
        self._sub: Subscription | None = None
        self._turn_counter = 0
        self.turn: Turn | None = None
        self.ending = False
        self.stream_closed = asyncio.Event()
        self.ended = asyncio.Event()
        self.stale_dropped = 0
        self.last_audio_seq = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        call_id_var.set(self.call_id)
        self._sub = await self.bus.subscribe(subjects.call_out_all(self.call_id), self.on_bus)
        await self._control(0, started=CallEvent.Started(sample_rate=self.rate,
                                                          edge=self.edge.name))
        announce = CallAnnounce(meta=self.bus.meta(self.call_id, 0, subjects.WORK_CALLS),
                                sample_rate=self.rate, edge=self.edge.name,
                                gateway_id=self.gateway_id)
        await self.bus.publish_acked(subjects.WORK_CALLS, announce,
                                     msg_id=f"announce-{self.call_id}")
        log.info("call started", extra={"edge": self.edge.name})

    async def hangup(self, reason: str, flush_timeout_s: float = 15.0) -> None:
        """End the call: flush what the caller said, record it, then publish Ended."""
        if self.ending:
            await self.ended.wait()
            return
        self.ending = True
        tail = self._framer.flush()
        if tail:
            await self._publish_frame(tail)
        if self.turn is not None:
            await self._cancel_turn("call ending")
        await self._control(self._turn_counter, ending=CallEvent.Ending(
            reason=reason, last_audio_seq=self.last_audio_seq))
        try:
            await asyncio.wait_for(self.stream_closed.wait(), timeout=flush_timeout_s)
        except TimeoutError:
            log.warning("STT did not confirm the end of the stream in time")
        await self._control(self._turn_counter, ended=CallEvent.Ended(reason=reason))
        if self._sub is not None:
            await self._sub.unsubscribe()
        self.bus.forget_subjects(self.call_id)
        self.ended.set()
        log.info("call ended", extra={"reason": reason, "turns": self._turn_counter})

    # -- caller audio -----------------------------------------------------------------------

    async def on_caller_audio(self, pcm16: bytes) -> None:
        """PCM16 at the bus rate, any chunking; published as 20 ms frames (core publish)."""
        if self.ending:
            return
        for frame in self._framer.push(pcm16):
            await self._publish_frame(frame)

    async def _publish_frame(self, pcm: bytes) -> None:
        offset = self.clock.stamp_frame()
        meta = self.bus.meta(self.call_id, self._turn_counter, self._audio_subject)
        self.last_audio_seq = meta.seq
        msg = AudioFrame(meta=meta, sample_rate=self.rate, pcm=pcm, stream_offset_ms=offset)
        await self.bus.publish(self._audio_subject, msg, traced=False)

    # -- messages from the services ---------------------------------------------------------

    async def on_bus(self, msg: Msg) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        try:
            if kind == "audio":
                self._on_audio(decode(AudioChunk, msg.data))
            elif kind == "llm":
                await self._on_tokens(decode(TokenDelta, msg.data))
            elif kind == "transcript":
                await self._on_transcript(decode(Transcript, msg.data))
            elif kind == "vad":
                await self._on_vad(decode(VadEvent, msg.data))
        except BadMessage as exc:
            log.warning("bad message from the bus: %s", exc, extra={"subject": msg.subject})

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind == VadEvent.STREAM_CLOSED:
            self.stream_closed.set()
            return
        name = "speech_start" if event.kind == VadEvent.SPEECH_START else "speech_end"
        await self._emit({"type": "vad", "event": name, "utterance": event.utterance_id,
                          "audio_offset_ms": event.audio_offset_ms})

    async def _on_transcript(self, t: Transcript) -> None:
        if not t.final:
            await self._emit({"type": "transcript", "final": False, "text": t.text,
                              "utterance": t.utterance_id})
            return
        text = t.text.strip()
        if not any(ch.isalnum() for ch in text):
            await self._emit({"type": "turn_skipped", "utterance": t.utterance_id,
                              "reason": "no words recognised"})
            return
        self._turn_counter += 1
        turn_id = self._turn_counter
        turn_id_var.set(turn_id)
        await self._control(turn_id, user_turn=CallEvent.UserTurn(text=text))
        await self._emit({"type": "transcript", "final": True, "text": text,
                          "utterance": t.utterance_id, "turn": turn_id,
                          "decode_ms": round(t.decode_ms, 1)})
        if self.ending:
            return  # what the caller said is kept; nobody is left to answer
        if self.turn is not None:
            await self._cancel_turn("caller spoke again")
        await self._open_turn(turn_id, text, t)

    async def _open_turn(self, turn_id: int, text: str, t: Transcript) -> None:
        player = TurnPlayer(self.edge.send_audio, self.rate, self.settings.playout_lead_ms)
        turn = Turn(turn_id=turn_id, user_text=text, player=player)
        turn.timings.speech_end = self.clock.wall_at(t.speech_end_ms)
        turn.timings.final_transcript = time.time_ns()
        self.turn = turn
        subject = subjects.work_llm(self.call_id)
        request = LlmRequest(meta=self.bus.meta(self.call_id, turn_id, subject), user_text=text,
                             speech_end_unix_ns=turn.timings.speech_end, sample_rate=self.rate)
        await self.bus.publish_acked(subject, request, msg_id=f"{self.call_id}-llm-{turn_id}")
        turn.task = asyncio.create_task(self._run_turn(turn))

    async def _on_tokens(self, delta: TokenDelta) -> None:
        turn = self._current(delta.meta.turn_id)
        if turn is None:
            return
        if not turn.timings.first_token and delta.text:
            turn.timings.first_token = delta.meta.sent_unix_ns
        if delta.text:
            await self._emit({"type": "agent_text", "turn": turn.turn_id, "delta": delta.text})
        if delta.done:
            turn.llm_done = True
            turn.agent_text = delta.full_text
            if delta.error:
                await self._emit({"type": "error", "turn": turn.turn_id,
                                  "message": f"the language model failed: {delta.error}"})
            turn.player.set_clause_count(delta.clause_count)

    def _on_audio(self, chunk: AudioChunk) -> None:
        turn = self._current(chunk.meta.turn_id)
        if turn is None:
            return
        if not turn.timings.first_audio_chunk:
            turn.timings.first_audio_chunk = chunk.meta.sent_unix_ns
        turn.player.add(chunk)

    def _current(self, turn_id: int) -> Turn | None:
        if self.turn is None or self.turn.turn_id != turn_id:
            self.stale_dropped += 1
            return None
        return self.turn

    # -- turns ------------------------------------------------------------------------------

    async def _run_turn(self, turn: Turn) -> None:
        try:
            await turn.player.play()
        except (ConnectionError, RuntimeError) as exc:  # the caller's socket went away
            log.info("playout stopped: %s", exc)
            turn.player.stalled = True
        if self.turn is not turn:
            return
        if turn.player.stalled:
            await self._emit({"type": "error", "turn": turn.turn_id,
                              "message": "the agent's reply stalled; turn abandoned"})
        turn.timings.first_audio_played = turn.player.first_frame_ns
        turn.timings.playout_done = time.time_ns()
        self.turn = None
        await self._record_agent_turn(turn, interrupted=turn.player.stalled)

    async def _cancel_turn(self, reason: str) -> None:
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        if turn.task is not None:
            turn.task.cancel()
        await self._control(turn.turn_id, cancel_turn=CallEvent.CancelTurn(reason=reason))
        await self.edge.clear()
        turn.timings.first_audio_played = turn.player.first_frame_ns
        await self._record_agent_turn(turn, interrupted=True)
        log.info("turn cancelled", extra={"reason": reason})

    async def _record_agent_turn(self, turn: Turn, interrupted: bool) -> None:
        heard = turn.player.heard_text()
        full = turn.agent_text or " ".join(turn.player.clause_texts[i]
                                           for i in sorted(turn.player.clause_texts))
        agent = CallEvent.AgentTurn(heard_text=heard, full_text=full, interrupted=interrupted,
                                    timings=turn.timings)
        await self._control(turn.turn_id, agent_turn=agent)
        await self._emit({
            "type": "turn", "turn": turn.turn_id, "user_text": turn.user_text,
            "agent_text": full, "heard_text": heard, "interrupted": interrupted,
            "audio_ms": turn.player.frames_sent * 20,
            "latency_ms": latency_breakdown(turn.timings),
        })

    # -- helpers ----------------------------------------------------------------------------

    async def _control(self, turn_id: int, **kind: Any) -> None:
        subject = subjects.control(self.call_id)
        event = CallEvent(meta=self.bus.meta(self.call_id, turn_id, subject), **kind)
        await self.bus.publish_acked(subject, event)

    async def _emit(self, event: dict[str, Any]) -> None:
        try:
            await self.edge.send_event(event)
        except Exception as exc:
            log.debug("edge event not delivered: %s", exc)
