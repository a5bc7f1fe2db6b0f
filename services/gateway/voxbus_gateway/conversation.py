"""One call's conversation: feeds the turn-taking policy (policy.py) the STT's and the
player's events and carries out what it decides: open, confirm, pause, resume and cancel
agent turns, with their bus events, metrics and traces. Keypad entries come from call.py,
idle handling from idle.py; the rules and knobs: docs/conversation.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from opentelemetry import trace

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.llm_pb2 import TokenDelta
from voxbus.v1.speech_pb2 import Transcript, VadEvent
from voxbus_common import metrics
from voxbus_common.logs import turn_id_var
from voxbus_common.routes import Route, load_router
from voxbus_common.telemetry import tracer
from voxbus_gateway import policy
from voxbus_gateway.barge_in import BargeIn
from voxbus_gateway.idle import watch_idle
from voxbus_gateway.playout import TurnPlayer
from voxbus_gateway.ports import CallPort
from voxbus_gateway.turn import Backchannels, Turn, has_words, record_turn_metrics

log = logging.getLogger(__name__)


class Conversation:
    def __init__(self, call: CallPort) -> None:
        self.call = call
        self.settings = call.settings
        self.policy = policy.TurnTaking(Backchannels(self.settings.backchannels), self)
        self.turn: Turn | None = None
        self.router = load_router(self.settings.routes_file)
        self.barge_in = BargeIn(call, self, self._apply, self.policy.confirm_timeout)
        self._idle_task: asyncio.Task[None] | None = None
        self._waiting: asyncio.Task[None] | None = None  # for uninterruptible speech to end
        self._last_activity = time.monotonic()
        self.heard_utterance, self.caller_heard_at = 0, 0.0  # STT failover: newest first
        self._keypad_route: Route | None = None
        self._final_meta: tuple[float, str] = (0.0, "")  # the final's decode time, end reason

    # -- the policy's view of the call (policy.Senses) ----------------------------------------

    def agent_audible(self) -> bool:
        return self.turn is not None and self.turn.player.frames_sent > 0

    def agent_interruptible(self) -> bool:
        turn = self.turn
        return turn is None or (turn.interruptible and turn.player.interruptible_now())

    def echo_correlation(self, utterance_id: int, onset_offset_ms: int) -> float:
        return self.barge_in.echo_correlation(utterance_id, onset_offset_ms)

    def is_echo(self, utterance_id: int, text: str) -> bool:
        return self.barge_in.is_echo(utterance_id, text)

    def has_route(self, text: str) -> bool:
        return self.router.match(text) is not None

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def turn_counter(self) -> int:
        return self.policy.turn_counter

    @property
    def muted(self) -> bool:
        return self.policy.muted

    def set_muted(self, muted: bool) -> None:
        self.policy.muted = muted

    @property
    def agent_speaking(self) -> bool:
        return self.turn is not None

    @property
    def current_turn(self) -> Turn | None:
        return self.turn

    def start(self) -> None:
        self._idle_task = asyncio.create_task(watch_idle(
            reprompt_s=self.settings.idle_reprompt_s, hangup_s=self.settings.idle_hangup_s,
            busy=lambda: self.policy.busy, last_activity=lambda: self._last_activity,
            touch=self.touch, reprompt=self._reprompt,
            hangup=lambda: self.call.request_hangup("idle timeout"),
            ended=lambda: self.call.ending))

    async def greet(self) -> None:
        """The agent speaks first when the agent file has a greeting. The client learns
        either way (`greeting`, turn None: speak now), so a script can wait for it."""
        said = await self.say(self.settings.greeting, self.settings.greeting_allow_interruptions)
        await self.call.emit({"type": "greeting", "turn": self.turn_counter if said else None,
                              "allow_interruptions": self.settings.greeting_allow_interruptions}
                             | ({"text": self.settings.greeting} if said else {}))

    async def say(self, text: str, interruptible: bool = True) -> bool:
        """Fixed text said now, unasked (greeting, re-prompt, Say); False if the agent is busy."""
        if not text:
            return False
        turn_id = self.policy.say()
        if turn_id is None:
            return False
        await self._open_turn(turn_id, "", 0, say=text, interruptible=interruptible)
        return True

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    async def _reprompt(self) -> None:
        await self.say(self.settings.idle_reprompt_text)

    async def stop(self) -> None:
        self.policy.ending = True
        self.barge_in.stop()
        for task in (self._idle_task, self._waiting):
            if task is not None:
                task.cancel()
        if self.turn is not None:
            await self.cancel_turn("call ending")

    # -- events in --------------------------------------------------------------------------

    async def on_vad(self, event: VadEvent) -> None:
        uid, offset = event.utterance_id, event.audio_offset_ms
        if uid <= self.policy.finalized_utterance:
            return  # replayed by an STT replica that took the call over: already decided
        self._last_activity = self.caller_heard_at = time.monotonic()
        self.heard_utterance = max(self.heard_utterance, uid)
        if event.kind == VadEvent.SPEECH_ONSET:
            await self._apply(self.policy.onset(uid, offset))
            return
        if event.kind == VadEvent.SPEECH_RESUMED:
            await self._apply(self.policy.speech_resumed(uid))
            return
        if event.kind == VadEvent.SPEECH_START:
            await self._apply(self.policy.speech_start(uid, offset))
        elif event.kind == VadEvent.SPEECH_END:
            self.policy.speech_end(uid)
        name = "speech_start" if event.kind == VadEvent.SPEECH_START else "speech_end"
        await self.call.emit({"type": "vad", "event": name, "utterance": uid,
                              "audio_offset_ms": offset})

    async def on_transcript(self, t: Transcript) -> None:
        if t.utterance_id <= self.policy.finalized_utterance:
            return  # a late partial (or a repeated final) of an utterance already decided
        self.policy.ending = self.call.ending
        if not t.final:
            actions = self.policy.partial(t.utterance_id, t.text, t.stable, t.speech_end_ms)
            await self._apply([a for a in actions if not isinstance(a, policy.Answer)])
            await self.call.emit({"type": "transcript", "final": False, "text": t.text,
                                  "utterance": t.utterance_id, "stable": t.stable})
            answers: list[policy.Action] = [a for a in actions if isinstance(a, policy.Answer)]
            await self._apply(answers)
            if not answers:  # (an answer's own request evaluates these words)
                await self._prefill(t.text.strip())
            return
        self._last_activity = time.monotonic()
        self._final_meta = (t.decode_ms, t.end_of_turn)
        await self._apply(self.policy.final(t.utterance_id, t.text, t.speech_end_ms))

    async def _prefill(self, text: str) -> None:
        """The caller's words so far, for the model to evaluate early (not routed words)."""
        if (self.settings.llm_prefill and not self.policy.muted and not self.call.ending
                and has_words(text) and not self.has_route(text)):
            await self.call.prefill_reply(self.turn_counter + 1, text)

    async def keypad_turn(self, text: str, route: Route | None) -> None:
        self._keypad_route = route
        await self._apply(self.policy.keypad(text))

    def on_mark(self, name: str) -> None:
        try:
            turn_id, epoch, cursor = (int(part) for part in name.split(":"))
        except ValueError:
            return  # not one of ours
        turn = self.turn
        if turn is not None and turn_id == turn.turn_id and epoch == self.barge_in.clear_epoch:
            turn.player.mark_played(cursor)

    async def on_tokens(self, delta: TokenDelta) -> None:
        turn = self._current(delta.meta.turn_id)
        if turn is None:
            return
        if delta.tool_started:
            await self.call.emit({"type": "tool_call", "turn": turn.turn_id,
                                  "name": delta.tool_started})
        if not turn.timings.first_token and delta.text:
            turn.timings.first_token = delta.meta.sent_unix_ns
        if delta.text and not turn.preemptive:
            await self.call.emit({"type": "agent_text", "turn": turn.turn_id, "delta": delta.text})
        if delta.done:
            turn.agent_text = delta.full_text
            turn.llm_first_token_ms = delta.first_token_ms
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

    # -- carrying out the policy's decisions ----------------------------------------------------

    async def _apply(self, actions: list[policy.Action]) -> None:
        for action in actions:
            await self._do(action)

    async def _do(self, a: policy.Action) -> None:
        if isinstance(a, policy.PauseAgent):
            await self.barge_in.pause(a)
        elif isinstance(a, policy.StartConfirmTimer):
            self.barge_in.start_timer(a.utterance_id)
        elif isinstance(a, policy.ResumeAgent):
            await self.barge_in.resume(a)
        elif isinstance(a, policy.Interrupted):
            await self.barge_in.interrupted(a.utterance_id)
        elif isinstance(a, policy.CancelAgent):
            await self._cancel(a.reason)
        elif isinstance(a, policy.DropPreemptive):
            await self._drop_preemptive(a.reason)
        elif isinstance(a, policy.EchoIgnored):
            log.info("caller audio is the agent's echo: not interrupting",
                     extra={"correlation": round(a.correlation, 2), "utterance": a.utterance_id})
            await self.call.emit({"type": "echo_ignored", "utterance": a.utterance_id,
                                  "correlation": round(a.correlation, 2)})
        elif isinstance(a, policy.SkipUtterance):
            event = {"type": "turn_skipped", "utterance": a.utterance_id, "reason": a.reason}
            await self.call.emit(event | ({"text": a.text} if a.text else {}))
        elif isinstance(a, policy.RecordUserTurn):
            await self._record_user_turn(a)
        elif isinstance(a, policy.ConfirmPreemptive):
            if self.turn is not None and self.turn.turn_id == a.turn_id:
                self.turn.preemptive = False
                self.turn.timings.speech_end = self.call.clock.wall_at(a.speech_end_ms)
                self.turn.timings.final_transcript = time.time_ns()
                self.turn.player.resume()
        elif isinstance(a, policy.Answer):
            await self._answer(a)
        elif isinstance(a, policy.WaitUntilInterruptible) and self.turn is not None:
            self._waiting = asyncio.create_task(self._until_interruptible(self.turn))

    async def _record_user_turn(self, a: policy.RecordUserTurn) -> None:
        turn_id_var.set(a.turn_id)
        decode_ms, end_of_turn = self._final_meta
        self._final_meta = (0.0, "")
        await self.call.control(a.turn_id, user_turn=CallEvent.UserTurn(text=a.text))
        event = {"type": "transcript", "final": True, "text": a.text,
                 "utterance": a.utterance_id, "turn": a.turn_id,
                 "decode_ms": round(decode_ms, 1), "preempted": a.confirmed}
        await self.call.emit(event | ({"end_of_turn": end_of_turn} if end_of_turn else {}))

    async def _answer(self, a: policy.Answer) -> None:
        if a.preemptive:
            end_ns = self.call.clock.wall_at(a.speech_end_ms)
            await self._open_turn(a.turn_id, a.text, end_ns, preemptive=True)
            return
        keypad, self._keypad_route = self._keypad_route, None
        route = keypad if a.utterance_id == 0 else self.router.match(a.text)
        end_ns = time.time_ns() if a.utterance_id == 0 else self.call.clock.wall_at(
            a.speech_end_ms)
        if route is not None:  # answered by a rule: straight to TTS, no LLM
            metrics.ROUTED.labels(route.name).inc()
            await self.call.emit({"type": "routed", "turn": a.turn_id, "route": route.name})
        await self._open_turn(a.turn_id, a.text, end_ns, say=route.say if route else "",
                              interruptible=route.allow_interruptions if route else True)
        if route is not None and route.action and self.turn is not None:
            self.turn.take_action(route.action, route.target, f"route {route.name}")

    async def _until_interruptible(self, turn: Turn) -> None:
        await turn.player.interruptible_reached()
        if self.turn is turn:
            await self._apply(self.policy.interruptible())

    # -- agent turns ----------------------------------------------------------------------------

    def _sender(self, turn_id: int, answers_caller: bool) -> Callable[[bytes], Awaitable[None]]:
        """The edge's send, announcing the turn (`speaking`) before its first frame: a
        client can tell an answer's audio from a greeting's or a re-prompt's."""
        started = False

        async def send(pcm16: bytes) -> None:
            nonlocal started
            if not started:
                started = True
                await self.call.edge.send_event({"type": "speaking", "turn": turn_id,
                                                 "answer": answers_caller})
            await self.call.edge.send_audio(pcm16)

        return send

    async def _open_turn(self, turn_id: int, text: str, speech_end_ns: int,
                         preemptive: bool = False, say: str = "",
                         interruptible: bool = True) -> None:
        player = TurnPlayer(self._sender(turn_id, bool(text)), self.call.rate,
                            self.settings.playout_lead_ms,
                            on_mark_point=self._send_mark if self.call.edge.supports_marks
                            else None)
        span = tracer().start_span("turn", attributes={"voxbus.turn_id": turn_id})
        turn = Turn(turn_id=turn_id, user_text=text, player=player, preemptive=preemptive,
                    span=span, interruptible=interruptible)
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
            epoch = self.barge_in.clear_epoch
            await self.call.edge.send_mark(f"{self.turn.turn_id}:{epoch}:{cursor}")

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
        await self._apply(self.policy.agent_done(turn.turn_id))

    async def cancel_turn(self, reason: str) -> None:
        """The agent's turn ends now (control API, mute, hang-up)."""
        self.policy.cancelled()
        await self._cancel(reason)

    async def _cancel(self, reason: str) -> None:
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

    async def _record_agent_turn(self, turn: Turn, interrupted: bool,
                                 heard_all: bool = False) -> None:
        agent = turn.agent_record(interrupted, heard_all)
        await self.call.control(turn.turn_id, agent_turn=agent)
        summary = turn.summary(agent)
        record_turn_metrics(summary, stalled=turn.player.stalled)
        turn.end_span(summary)
        await self.call.emit(summary)
