"""One call's turn state machine: turns, preemption on stable partials, barge-in (pause, then
resume or interrupt), echo and backchannel rejection, greeting, tool actions. Keypad entries
come from call.py, idle handling from idle.py; the policy and its knobs: docs/conversation.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from opentelemetry import trace

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.llm_pb2 import TokenDelta
from voxbus.v1.speech_pb2 import Transcript, VadEvent
from voxbus_common import metrics
from voxbus_common.logs import turn_id_var
from voxbus_common.routes import Route, load_router
from voxbus_common.telemetry import tracer
from voxbus_gateway import echo
from voxbus_gateway.idle import watch_idle
from voxbus_gateway.playout import TurnPlayer
from voxbus_gateway.turn import (
    Backchannels,
    PendingInterrupt,
    Turn,
    has_words,
    normalized,
    record_turn_metrics,
)

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

log = logging.getLogger(__name__)


class Conversation:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.settings = call.settings
        self.turn_counter = 0
        self.turn: Turn | None = None
        self.interrupt: PendingInterrupt | None = None
        self.backchannels = Backchannels(self.settings.backchannels)
        self._stable_text: dict[int, str] = {}
        self._idle_task: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()
        self._caller_speaking = False
        self._clear_epoch = 0
        self._finalized_utterance = 0
        self._onset_correlation: dict[int, float] = {}  # per utterance, from echo.py
        self.router = load_router(self.settings.routes_file)
        self.muted = False  # control API: the agent listens but does not answer

    def start(self) -> None:
        self._idle_task = asyncio.create_task(watch_idle(
            reprompt_s=self.settings.idle_reprompt_s, hangup_s=self.settings.idle_hangup_s,
            busy=self._busy, last_activity=lambda: self._last_activity, touch=self.touch,
            reprompt=self._reprompt, hangup=lambda: self.call.request_hangup("idle timeout"),
            ended=lambda: self.call.ending))

    async def greet(self) -> None:  # the agent speaks first when the agent file has a greeting
        await self.say(self.settings.greeting)

    async def say(self, text: str) -> bool:
        """Fixed text said now, unasked (greeting, re-prompt, Say); False if the agent is busy."""
        if not text or self.turn is not None:
            return False
        self.turn_counter += 1
        await self._open_turn(self.turn_counter, "", 0, say=text)
        return True

    def _busy(self) -> bool:
        agent_talking = self.turn is not None and bool(self.turn.user_text)
        return agent_talking or self._caller_speaking or self.interrupt is not None

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    async def _reprompt(self) -> None:
        await self.say(self.settings.idle_reprompt_text)

    async def stop(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        if self.interrupt is not None and self.interrupt.timer is not None:
            self.interrupt.timer.cancel()
        if self.turn is not None:
            await self.cancel_turn("call ending")

    # -- caller speech --------------------------------------------------------------------------

    async def on_vad(self, event: VadEvent) -> None:
        uid = event.utterance_id
        if uid <= self._finalized_utterance:
            return  # replayed by an STT replica that took the call over: already decided
        self._last_activity = time.monotonic()
        if event.kind == VadEvent.SPEECH_ONSET:
            await self._caller_onset(uid, event.audio_offset_ms)
            return
        if event.kind == VadEvent.SPEECH_START:
            self._caller_speaking = True
            if self.interrupt is not None and self.interrupt.utterance_id == uid:
                self.interrupt.confirmed = True
            else:
                await self._caller_onset(uid, event.audio_offset_ms)
        elif event.kind == VadEvent.SPEECH_END:
            self._caller_speaking = False
        name = "speech_start" if event.kind == VadEvent.SPEECH_START else "speech_end"
        await self.call.emit({"type": "vad", "event": name, "utterance": uid,
                              "audio_offset_ms": event.audio_offset_ms})

    async def _caller_onset(self, uid: int, offset_ms: int) -> None:
        turn = self.turn
        if turn is not None and turn.preemptive:
            await self._drop_preemptive("the caller went on speaking")
            return
        if turn is None or self.interrupt is not None or turn.player.paused:
            return
        if turn.player.frames_sent == 0:
            return  # nothing audible yet: a final from this speech will supersede the turn
        if self._onset_correlation.get(uid, 0.0) >= echo.ECHO_CORRELATION:
            return
        correlation = echo.onset_echo_correlation(
            self.call.caller_audio_since(max(0, offset_ms - 40)), turn.player.recent_sent(75))
        recent = {u: c for u, c in self._onset_correlation.items() if u >= uid - 4}
        self._onset_correlation = recent | {uid: correlation}  # (bounded per call)
        if correlation >= echo.ECHO_CORRELATION:
            log.info("caller audio is the agent's echo: not interrupting",
                     extra={"correlation": round(correlation, 2), "utterance": uid})
            await self.call.emit({"type": "echo_ignored", "utterance": uid,
                                  "correlation": round(correlation, 2)})
            return
        log.info("caller onset during playout", extra={"correlation": round(correlation, 2)})
        turn.player.pause()
        self._clear_epoch += 1
        await self.call.edge.clear()
        onset_ns = self.call.clock.wall_at(offset_ms)
        self.interrupt = PendingInterrupt(uid, onset_ns, time.time_ns())
        self.interrupt.timer = asyncio.create_task(self._resume_unless_confirmed(uid))
        reaction = (self.interrupt.cleared_ns - onset_ns) / 1e6
        metrics.BARGE_IN_REACTION.observe(reaction / 1000)
        await self.call.emit({"type": "barge_in", "phase": "paused", "utterance": uid,
                              "turn": turn.turn_id, "reaction_ms": round(reaction, 1)})

    async def _resume_unless_confirmed(self, uid: int) -> None:
        await asyncio.sleep(self.settings.barge_in_confirm_ms / 1000)
        pending = self.interrupt
        if pending is not None and pending.utterance_id == uid and not pending.confirmed:
            await self._resume("no speech followed the onset")

    async def _resume(self, why: str) -> None:
        pending, self.interrupt = self.interrupt, None
        if pending is None or self.turn is None:
            return
        if pending.timer is not None and pending.timer is not asyncio.current_task():
            pending.timer.cancel()
        self.turn.player.resume()
        metrics.INTERRUPTIONS.labels("false").inc()
        await self.call.control(self.turn.turn_id, barge_in=CallEvent.BargeIn(
            utterance_id=pending.utterance_id, false_interruption=True,
            reaction_ms=(pending.cleared_ns - pending.onset_ns) / 1e6))
        await self.call.emit({"type": "barge_in", "phase": "resumed", "reason": why,
                              "utterance": pending.utterance_id, "turn": self.turn.turn_id})

    async def _commit_interrupt(self) -> None:
        pending, self.interrupt = self.interrupt, None
        if pending is None or self.turn is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        metrics.INTERRUPTIONS.labels("confirmed").inc()
        await self.call.control(self.turn.turn_id, barge_in=CallEvent.BargeIn(
            utterance_id=pending.utterance_id,
            reaction_ms=(pending.cleared_ns - pending.onset_ns) / 1e6))
        await self.cancel_turn("caller barged in")

    async def on_transcript(self, t: Transcript) -> None:
        pending = self.interrupt
        if t.utterance_id <= self._finalized_utterance:
            return  # a late partial (or a repeated final) of an utterance already decided
        if t.final:
            self._finalized_utterance = t.utterance_id
        if not t.final:
            if pending is not None and pending.utterance_id == t.utterance_id and (
                    not self.backchannels.matches(t.text)) and not self._is_echo(t):
                await self._commit_interrupt()
            await self.call.emit({"type": "transcript", "final": False, "text": t.text,
                                  "utterance": t.utterance_id, "stable": t.stable})
            if t.stable and pending is None and not self.call.ending:
                await self._preempt(t)
            return
        self._last_activity = time.monotonic()
        text = t.text.strip()
        if self._is_echo(t):
            if pending is not None and pending.utterance_id == t.utterance_id:
                await self._resume("the agent's own echo")
            await self.call.emit({"type": "turn_skipped", "utterance": t.utterance_id,
                                  "reason": "echo of the agent", "text": text})
            return
        interrupting = pending is not None and pending.utterance_id == t.utterance_id
        talking = self.turn is not None and not self.turn.preemptive and has_words(text)
        if self.backchannels.matches(text) and (interrupting or talking):  # also a late final
            if interrupting:
                await self._resume("backchannel" if has_words(text) else "noise")
            await self.call.emit({"type": "turn_skipped", "utterance": t.utterance_id,
                                  "reason": "backchannel", "text": text})
            return
        if interrupting:
            await self._commit_interrupt()
        if not has_words(text):
            await self._drop_preemptive("no words recognised")
            await self.call.emit({"type": "turn_skipped", "utterance": t.utterance_id,
                                  "reason": "no words recognised"})
            return
        await self.user_turn(text, self.call.clock.wall_at(t.speech_end_ms), t.utterance_id,
                              t.decode_ms)

    def _is_echo(self, t: Transcript) -> bool:
        """Caller speech that is the agent's own voice coming back (echo.py)."""
        turn = self.turn
        audible = turn is not None and not turn.preemptive and turn.player.frames_sent > 0
        said = (turn.agent_text or turn.player.full_text()) if turn and audible else None
        return echo.is_echo_transcript(t.text, self._onset_correlation.get(t.utterance_id, 0.0),
                                       said)

    async def user_turn(self, text: str, speech_end_ns: int, utterance: int = 0,
                         decode_ms: float = 0.0, route: Route | None = None) -> None:
        turn, muted = self.turn, self.muted  # (muted as the words arrived, not after awaits)
        confirmed = turn is not None and turn.preemptive and (
            self._stable_text.get(turn.turn_id) == normalized(text))
        if not confirmed:
            await self._drop_preemptive("the final transcript differs")
            self.turn_counter += 1
        turn_id = self.turn_counter
        turn_id_var.set(turn_id)
        await self.call.control(turn_id, user_turn=CallEvent.UserTurn(text=text))
        await self.call.emit({"type": "transcript", "final": True, "text": text,
                              "utterance": utterance, "turn": turn_id,
                              "decode_ms": round(decode_ms, 1), "preempted": confirmed})
        if self.call.ending or muted:
            return  # what the caller said is kept; nobody (or a muted agent) answers
        if confirmed and turn is not None:
            turn.preemptive = False
            turn.timings.speech_end = speech_end_ns
            turn.timings.final_transcript = time.time_ns()
            turn.player.resume()
            return
        if self.turn is not None:
            await self.cancel_turn("caller spoke again")
        route = route or self.router.match(text)
        if route is not None:  # answered by a rule: straight to TTS, no LLM
            metrics.ROUTED.labels(route.name).inc()
            await self.call.emit({"type": "routed", "turn": turn_id, "route": route.name})
        await self._open_turn(turn_id, text, speech_end_ns, say=route.say if route else "")
        if route is not None and route.action and self.turn is not None:
            self.turn.take_action(route.action, route.target, f"route {route.name}")

    async def _preempt(self, t: Transcript) -> None:
        """Start the LLM on the stable partial; the final decides whether it is kept."""
        if (not has_words(t.text) or self.backchannels.matches(t.text) or self.muted
                or self.router.match(t.text) is not None):
            return  # (a routed request waits for its final: the rule answers at once)
        if self.turn is not None and not self.turn.preemptive:
            return  # the agent's current turn is handled by the barge-in logic
        await self._drop_preemptive("a newer stable partial")
        self.turn_counter += 1
        turn_id = self.turn_counter
        self._stable_text = {turn_id: normalized(t.text)}  # (only the newest is asked)
        await self._open_turn(turn_id, t.text.strip(), self.call.clock.wall_at(t.speech_end_ms),
                              preemptive=True)

    async def _drop_preemptive(self, why: str) -> None:
        turn = self.turn
        if turn is None or not turn.preemptive:
            return
        self.turn = None
        if turn.task is not None:
            turn.task.cancel()
        turn.end_span(None)
        await self.call.control(turn.turn_id, cancel_turn=CallEvent.CancelTurn(reason=why))
        log.info("preemptive turn dropped", extra={"reason": why, "turn": turn.turn_id})

    # -- agent turns ------------------------------------------------------------------------

    async def _open_turn(self, turn_id: int, text: str, speech_end_ns: int,
                         preemptive: bool = False, say: str = "") -> None:
        player = TurnPlayer(self.call.edge.send_audio, self.call.rate,
                            self.settings.playout_lead_ms,
                            on_mark_point=self._send_mark if self.call.edge.supports_marks
                            else None)
        span = tracer().start_span("turn", attributes={"voxbus.turn_id": turn_id})
        turn = Turn(turn_id=turn_id, user_text=text, player=player, preemptive=preemptive,
                    span=span)
        if preemptive:
            player.pause()
        turn.timings.speech_end = speech_end_ns
        turn.timings.final_transcript = 0 if preemptive else time.time_ns()
        self.turn = turn
        with trace.use_span(span, end_on_exit=False):
            await self.call.request_reply(turn, text, speech_end_ns, say)
        turn.task = asyncio.create_task(self._run_turn(turn))

    async def _send_mark(self, cursor: int) -> None:
        if self.turn is not None:
            await self.call.edge.send_mark(f"{self.turn.turn_id}:{self._clear_epoch}:{cursor}")

    def on_mark(self, name: str) -> None:
        try:
            turn_id, epoch, cursor = (int(part) for part in name.split(":"))
        except ValueError:
            return  # not one of ours
        if self.turn is not None and turn_id == self.turn.turn_id and epoch == self._clear_epoch:
            self.turn.player.mark_played(cursor)

    async def on_tokens(self, delta: TokenDelta) -> None:
        turn = self._current(delta.meta.turn_id)
        if turn is None:
            return
        if not turn.timings.first_token and delta.text:
            turn.timings.first_token = delta.meta.sent_unix_ns
        if delta.text and not turn.preemptive:
            await self.call.emit({"type": "agent_text", "turn": turn.turn_id, "delta": delta.text})
        if delta.done:
            turn.agent_text = delta.full_text
            if delta.error:
                await self.call.emit({"type": "error", "turn": turn.turn_id,
                                      "message": f"the language model failed: {delta.error}"})
            turn.take_action(delta.action, delta.action_target)
            if delta.tools_called:
                await self.call.emit({"type": "tools", "turn": turn.turn_id,
                                      "tools": list(delta.tools_called)})
            turn.player.set_clause_count(delta.clause_count)

    def on_audio(self, chunk: AudioChunk) -> None:
        turn = self._current(chunk.meta.turn_id)
        if turn is None:
            return
        if not turn.timings.first_audio_chunk:
            turn.timings.first_audio_chunk = chunk.meta.sent_unix_ns
        turn.player.add(chunk)

    def _current(self, turn_id: int) -> Turn | None:
        if self.turn is None or self.turn.turn_id != turn_id:
            metrics.STALE_DROPPED.labels("gateway").inc()
            return None
        return self.turn

    async def _run_turn(self, turn: Turn) -> None:
        try:
            await turn.player.play()
        except (ConnectionError, RuntimeError) as exc:  # the caller's socket went away
            log.info("playout stopped: %s", exc)
            turn.player.stalled = True
        if self.turn is not turn:
            return
        if turn.player.stalled:
            await self.call.emit({"type": "error", "turn": turn.turn_id,
                                  "message": "the agent's reply stalled; turn abandoned"})
        turn.timings.first_audio_played = turn.player.first_frame_ns
        turn.timings.playout_done = time.time_ns()
        self.turn = None
        if turn.user_text:  # an idle re-prompt does not count as conversation
            self._last_activity = time.monotonic()
        if turn.hangup_after:  # requested before the caller can see the turn end
            self.call.request_hangup(turn.hangup_after)
        elif turn.transfer_to:
            await self.call.transfer(turn.turn_id, turn.transfer_to)
        await self._record_agent_turn(turn, interrupted=turn.player.stalled, heard_all=True)

    async def cancel_turn(self, reason: str) -> None:
        turn = self.turn
        if turn is None:
            return
        if turn.preemptive:
            await self._drop_preemptive(reason)
            return
        self.turn = None
        turn.player.pause()
        if turn.task is not None:
            turn.task.cancel()
        await self.call.control(turn.turn_id, cancel_turn=CallEvent.CancelTurn(reason=reason))
        with contextlib.suppress(Exception):
            await self.call.edge.clear()
        turn.timings.first_audio_played = turn.player.first_frame_ns
        await self._record_agent_turn(turn, interrupted=True)
        log.info("turn cancelled", extra={"reason": reason})

    async def _record_agent_turn(self, turn: Turn, interrupted: bool,
                                 heard_all: bool = False) -> None:
        agent = turn.agent_record(interrupted, heard_all)
        await self.call.control(turn.turn_id, agent_turn=agent)
        summary = turn.summary(agent)
        record_turn_metrics(summary, stalled=turn.player.stalled)
        turn.end_span(summary)
        await self.call.emit(summary)
