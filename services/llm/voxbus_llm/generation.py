"""One turn's generation: stream the model, speak each clause as soon as it is complete, run
the tools the model asks for and feed their results back, up to the agent's step limit.

Cancellation (barge-in, hang-up) is checked at every token and interrupts a running tool at
once. A tool that keeps the caller waiting longer than the filler delay makes the agent say
a short filler ("One moment.") unless something was already said in this turn. In a turn
started on a partial transcript, a tool with side effects waits for the final transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voxbus_common.agent import Filler
from voxbus_common.clauses import ClauseSplitter
from voxbus_common.metrics import LLM_FIRST_TOKEN
from voxbus_common.providers import ChatModel, ChatTurn, ToolCall
from voxbus_common.turns import StaleTurns
from voxbus_llm.tools import ToolBox, ToolOutcome

log = logging.getLogger(__name__)


FALLBACK = "Sorry, I didn't manage that. Could you say it again?"


class TurnCancelled(Exception):
    """The gateway cancelled the turn: stop without a trace on the bus."""


@dataclass
class TurnGeneration:
    call_id: str
    turn_id: int
    model: ChatModel
    tools: ToolBox
    stale: StaleTurns
    # (clause, index, uninterruptible) -> TTS request
    speak: Callable[[str, int, bool], Awaitable[None]]
    send_text: Callable[[str], Awaitable[None]]  # a text delta for the gateway
    # the model called this tool (the caller's screen shows it while it runs)
    tool_started: Callable[[str], Awaitable[None]] | None = None
    max_steps: int = 3
    preemptive: bool = False  # the final transcript may still differ (or never come)
    final_timeout_s: float = 30.0
    filler: Filler = field(default_factory=Filler)
    parts: list[str] = field(default_factory=list)
    clauses: int = 0
    first_token_ms: float = 0.0
    tools_called: list[str] = field(default_factory=list)
    action: str = ""
    action_target: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def full_text(self) -> str:
        return "".join(self.parts).strip()

    def _check(self) -> None:
        if self.stale.is_stale(self.call_id, self.turn_id):
            raise TurnCancelled

    async def run(self, messages: list[ChatTurn]) -> None:
        """Generate the whole turn; raises TurnCancelled, or the model's error."""
        definitions = self.tools.definitions()
        for step in range(self.max_steps):
            offer = definitions if definitions and step < self.max_steps - 1 else None
            text, calls = await self._stream_step(messages, offer)
            heard = " ".join(m.content for m in messages if m.role == "user")
            if not calls or offer is None:  # (a call written at the last step is not run)
                break
            messages = [*messages, ChatTurn("assistant", text, tool_calls=tuple(calls))]
            for call, outcome in zip(calls, await self._run_tools(calls, heard), strict=True):
                messages.append(ChatTurn("tool", outcome.result, tool_call_id=call.id))
                if outcome.action and not self.action:
                    self.action, self.action_target = outcome.action, outcome.target
        if self.clauses == 0 and not self.action:
            # the model said nothing a caller could hear (only bad tool calls, or an empty
            # reply): a graceful sentence keeps the call going
            log.warning("the model's turn produced no speech: saying the fallback")
            self.parts.append(FALLBACK)
            await self.send_text(FALLBACK)
            await self._say(FALLBACK)

    async def _stream_step(self, messages: list[ChatTurn],
                           tools: list[dict[str, object]] | None) -> tuple[str, list[ToolCall]]:
        splitter = ClauseSplitter()
        text: list[str] = []
        calls: list[ToolCall] = []
        async for item in self.model.stream(messages, tools):
            self._check()
            if isinstance(item, ToolCall):
                calls.append(item)
                continue
            if not self.first_token_ms:
                self.first_token_ms = (time.perf_counter() - self.started) * 1000.0
                LLM_FIRST_TOKEN.observe(self.first_token_ms / 1000)
            self.parts.append(item)
            text.append(item)
            await self.send_text(item)
            for clause in splitter.push(item):
                await self._say(clause)
        self._check()
        for clause in splitter.flush():
            await self._say(clause)
        if text and calls:
            self.parts.append(" ")  # the next step's words start a new sentence
        return "".join(text), calls

    async def _say(self, clause: str, uninterruptible: bool = False) -> None:
        await self.speak(clause, self.clauses, uninterruptible)
        self.clauses += 1

    async def _run_tools(self, calls: list[ToolCall], heard: str) -> list[ToolOutcome]:
        """All of one step's calls concurrently; a filler if they keep the caller waiting;
        abandoned the moment the turn is cancelled."""
        self.tools_called += [c.name for c in calls]
        if self.tool_started is not None:
            for call in calls:
                await self.tool_started(call.name[:64])
        if self.preemptive and any(self.tools.has_side_effects(c.name) for c in calls):
            log.info("tool with side effects: waiting for the final transcript")
            try:
                confirmed = await asyncio.wait_for(
                    self.stale.until_final(self.call_id, self.turn_id), self.final_timeout_s)
            except TimeoutError:
                confirmed = False
            if not confirmed:
                raise TurnCancelled
            self.preemptive = False
        work: asyncio.Future[list[ToolOutcome]] = asyncio.ensure_future(
            asyncio.gather(*(self.tools.run(c, heard) for c in calls)))
        cancelled: asyncio.Future[None] = asyncio.ensure_future(
            self.stale.until_stale(self.call_id, self.turn_id))
        try:
            waiting: set[asyncio.Future[Any]] = {work, cancelled}  # both: Future[Any]
            done, _ = await asyncio.wait(waiting, timeout=self.filler.after_ms / 1000,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done and self.clauses == 0 and self.filler.text:
                log.info("tool is slow: saying the filler", extra={"tools": len(calls)})
                self.parts.append(self.filler.text + " ")
                await self.send_text(self.filler.text + " ")
                await self._say(self.filler.text, not self.filler.allow_interruptions)
            if not done:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if cancelled.done() or not work.done():
                log.info("turn cancelled while tools ran: tools abandoned")
                raise TurnCancelled
            return list(work.result())
        finally:
            for task in (work, cancelled):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
