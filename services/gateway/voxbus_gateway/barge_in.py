"""Caller speech over the agent, carried out: the policy (policy.py) decides to pause,
resume or give the turn up; this pauses the player and clears the carrier's buffer, times
the reaction, runs the confirm timer, and measures whether the onset is the agent's own echo.
The conversation owns it and hands it only what it needs (`AgentTurnSource`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from voxbus.v1.call_pb2 import CallEvent
from voxbus_common import metrics
from voxbus_gateway import echo, policy
from voxbus_gateway.ports import CallPort
from voxbus_gateway.turn import Turn

log = logging.getLogger(__name__)


class AgentTurnSource(Protocol):
    """The conversation as barge-in handling sees it: the agent turn now playing, if any."""

    @property
    def current_turn(self) -> Turn | None: ...


class BargeIn:
    def __init__(self, call: CallPort, turns: AgentTurnSource,
                 apply: Callable[[list[policy.Action]], Awaitable[None]],
                 confirm_timeout: Callable[[int], list[policy.Action]]) -> None:
        self.call = call
        self._turns = turns
        self._apply = apply
        self._confirm_timeout = confirm_timeout
        self.clear_epoch = 0  # marks sent before a clear belong to audio that was dropped
        self._timers: dict[int, asyncio.Task[None]] = {}  # barge-in confirm, per utterance
        self._onset_correlation: dict[int, float] = {}  # per utterance, from echo.py
        self._last: tuple[int, int, int] | None = None  # (utterance, onset ns, cleared ns)

    def echo_correlation(self, utterance_id: int, onset_offset_ms: int) -> float:
        """How much the caller's onset looks like the agent's audio just sent (once per
        utterance)."""
        turn = self._turns.current_turn
        known = self._onset_correlation.get(utterance_id)
        if known is not None or turn is None:
            return known or 0.0
        correlation = echo.onset_echo_correlation(
            self.call.caller_audio_since(max(0, onset_offset_ms - 40)),
            turn.player.recent_sent(75))
        recent = {u: c for u, c in self._onset_correlation.items() if u >= utterance_id - 4}
        self._onset_correlation = recent | {utterance_id: correlation}  # (bounded per call)
        return correlation

    def is_echo(self, utterance_id: int, text: str) -> bool:
        turn = self._turns.current_turn
        audible = turn is not None and not turn.preemptive and turn.player.frames_sent > 0
        said = (turn.agent_text or turn.player.full_text()) if turn and audible else None
        return echo.is_echo_transcript(text, self._onset_correlation.get(utterance_id, 0.0),
                                       said)

    def start_timer(self, uid: int) -> None:
        self._timers[uid] = asyncio.create_task(self._confirm(uid))

    def stop(self) -> None:
        for task in self._timers.values():
            task.cancel()

    async def pause(self, a: policy.PauseAgent) -> None:
        turn = self._turns.current_turn
        if turn is None:
            return
        turn.player.pause()
        self.clear_epoch += 1
        await self.call.edge.clear()
        onset_ns = self.call.clock.wall_at(a.onset_offset_ms)
        self._last = (a.utterance_id, onset_ns, time.time_ns())
        if not a.audible:
            return  # the agent had not started: nothing was cut off, no reaction to measure
        reaction = (self._last[2] - onset_ns) / 1e6
        log.info("caller onset during playout", extra={
            "utterance": a.utterance_id,
            "correlation": round(self._onset_correlation.get(a.utterance_id, 0.0), 2)})
        metrics.BARGE_IN_REACTION.observe(reaction / 1000)
        await self.call.emit({"type": "barge_in", "phase": "paused",
                              "utterance": a.utterance_id, "turn": turn.turn_id,
                              "reaction_ms": round(reaction, 1)})

    async def resume(self, a: policy.ResumeAgent) -> None:
        self._stop_timer(a.utterance_id)
        turn = self._turns.current_turn
        if turn is None:
            return
        turn.player.resume()
        metrics.INTERRUPTIONS.labels("false").inc()
        await self.call.control(turn.turn_id, barge_in=CallEvent.BargeIn(
            utterance_id=a.utterance_id, false_interruption=True,
            reaction_ms=self._reaction_ms(a.utterance_id)))
        await self.call.emit({"type": "barge_in", "phase": "resumed", "reason": a.reason,
                              "utterance": a.utterance_id, "turn": turn.turn_id})

    async def interrupted(self, uid: int) -> None:
        self._stop_timer(uid)
        turn = self._turns.current_turn
        if turn is None:
            return
        metrics.INTERRUPTIONS.labels("confirmed").inc()
        await self.call.control(turn.turn_id, barge_in=CallEvent.BargeIn(
            utterance_id=uid, reaction_ms=self._reaction_ms(uid)))

    async def _confirm(self, uid: int) -> None:
        await asyncio.sleep(self.call.settings.barge_in_confirm_ms / 1000)
        self._timers.pop(uid, None)
        await self._apply(self._confirm_timeout(uid))

    def _stop_timer(self, uid: int) -> None:
        timer = self._timers.pop(uid, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _reaction_ms(self, uid: int) -> float:
        if self._last is None or self._last[0] != uid:
            return 0.0
        return (self._last[2] - self._last[1]) / 1e6
