"""Background summaries of long calls: the event handler only schedules; the work runs as a
task that asks any LLM replica (request/reply) and stores the result with a
revision-checked update. A turn never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial

from voxbus.v1.llm_pb2 import ChatMessage, SummarizeReply, SummarizeRequest
from voxbus.v1.memory_pb2 import Session
from voxbus_common import subjects
from voxbus_common.bus import Bus, decode
from voxbus_common.config import MemoryService
from voxbus_common.metrics import ERRORS
from voxbus_common.telemetry import inject_headers
from voxbus_memory.store import SessionStore
from voxbus_memory.summary import apply_summary, plan_summary

log = logging.getLogger(__name__)

MAX_TRACKED_CALLS = 10_000  # token counts kept per call between checks (oldest dropped)
MAX_ROUNDS = 8  # catching up after an outage: a few chunks per scheduling, then the next turn


class SummaryFailed(RuntimeError):
    """The LLM could not summarize (no replica, timeout, error reply, empty text)."""


async def ask_summary(bus: Bus, settings: MemoryService, call_id: str, previous_summary: str,
                      messages: Sequence[ChatMessage]) -> str:
    """One summary from any LLM replica (queue group "llm")."""
    req = SummarizeRequest(meta=bus.meta(call_id, 0, subjects.RPC_LLM_SUMMARIZE),
                           previous_summary=previous_summary, messages=list(messages),
                           max_words=settings.memory_summary_max_words)
    try:
        msg = await bus.nc.request(subjects.RPC_LLM_SUMMARIZE, req.SerializeToString(),
                                   timeout=settings.llm_summarize_timeout_s + 2.0,
                                   headers=inject_headers())
        reply = decode(SummarizeReply, msg.data)
    except Exception as exc:
        raise SummaryFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    if reply.error:
        raise SummaryFailed(reply.error)
    if not reply.summary.strip():
        raise SummaryFailed("empty summary")
    return reply.summary.strip()


class Compactor:
    """At most one summarization in flight per call in this replica."""

    def __init__(self, bus: Bus, store: SessionStore, settings: MemoryService,
                 redact: Callable[[str], str]) -> None:
        self.bus = bus
        self.store = store
        self.settings = settings
        self.redact = redact
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._unchecked: OrderedDict[str, int] = OrderedDict()  # call -> tokens since check

    def _plan_args(self) -> tuple[int, int, int]:
        budget = self.settings.memory_summarize_tokens
        return budget, self.settings.memory_keep_recent, 2 * budget

    def maybe_schedule(self, session: Session, tokens: int | None = None) -> None:
        """Start a summary check if none is running for the call. The turns are in pages
        (session_pages.py), so a check reads them: it runs once a quarter of the budget
        has been recorded here since the last one (`tokens`: this event's; None: now)."""
        call_id, budget = session.call_id, self._plan_args()[0]
        if session.ended_unix_ns or budget <= 0:
            self._unchecked.pop(call_id, None)
            return
        seen = self._unchecked.pop(call_id, 0) + (budget if tokens is None else tokens)
        if seen < budget // 4 or call_id in self.in_flight:
            self._unchecked[call_id] = seen
            while len(self._unchecked) > MAX_TRACKED_CALLS:  # (calls that ended elsewhere)
                self._unchecked.popitem(last=False)
            return
        task = asyncio.create_task(self._run(call_id), name=f"summarize-{call_id}")
        self.in_flight[call_id] = task
        task.add_done_callback(lambda _: self.in_flight.pop(call_id, None))

    def forget(self, call_id: str) -> None:
        """The call ended: no more checks for it."""
        self._unchecked.pop(call_id, None)

    async def _run(self, call_id: str) -> None:
        try:
            for _ in range(MAX_ROUNDS):
                session = await self.store.whole(call_id, from_turn=None)
                plan = None if session is None else plan_summary(session, *self._plan_args())
                if plan is None:
                    return
                summary = self.redact(await ask_summary(
                    self.bus, self.settings, call_id, plan.previous_summary, plan.messages))
                stored = await self.store.mutate(
                    call_id, partial(apply_summary, through=plan.through, summary=summary))
                log.info("call summarized", extra={
                    "through_turn": stored.summarized_through, "messages": len(plan.messages),
                    "summary_chars": len(stored.summary)})
        except Exception as exc:
            ERRORS.labels("memory", "summary_failed").inc()
            why = exc if isinstance(exc, SummaryFailed) else f"{type(exc).__name__}: {exc}"
            log.warning("call summary failed, retried at the next turn: %s", why)

    async def close(self) -> None:
        """Cancel what is still running (shutdown): the next turn elsewhere redoes it."""
        tasks = list(self.in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
