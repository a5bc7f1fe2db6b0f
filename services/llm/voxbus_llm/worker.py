"""Stateless LLM turn worker: any replica serves any turn.

For each LlmRequest: fetch the conversation from memory, stream the completion, publish
token deltas for the gateway and one TtsRequest per clause for any TTS replica. A turn
that the gateway cancelled is abandoned at the next token.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from urllib.parse import urlparse

from nats.aio.msg import Msg
from opentelemetry import trace

from voxbus.v1.llm_pb2 import (
    ContextReply,
    ContextRequest,
    LlmPrefill,
    LlmRequest,
    TokenDelta,
    TtsRequest,
)
from voxbus_common import subjects
from voxbus_common.agent import Agent, Filler
from voxbus_common.bus import Bus, decode
from voxbus_common.config import LlmService
from voxbus_common.logs import call_id_var, turn_id_var
from voxbus_common.metrics import ERRORS, STALE_DROPPED, observe_hop
from voxbus_common.providers import ChatModel, ChatTurn, PromptCaching
from voxbus_common.pull_worker import deliveries
from voxbus_common.telemetry import inject_headers, tracer
from voxbus_common.turns import StaleTurns
from voxbus_llm.context import context_preamble
from voxbus_llm.generation import TurnCancelled, TurnGeneration
from voxbus_llm.tools import ToolBox

log = logging.getLogger(__name__)


class LlmWorker:
    def __init__(self, bus: Bus, settings: LlmService, model: ChatModel,
                 tools: ToolBox | None = None, agent: Agent | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.model = model
        self.tools = tools or ToolBox(None)
        self.max_steps = agent.tools.max_steps if agent else 3
        self.filler = agent.tools.filler if agent else Filler()
        self.stale = StaleTurns()
        # call -> the newest prompt to evaluate: the caller's words so far (the prompt is
        # built around them), or a whole prompt (the conversation after the agent's reply)
        self._prefill_next: dict[str, tuple[int, str | list[ChatTurn]]] = {}
        self._prefilling: dict[str, asyncio.Task[None]] = {}
        # the model's server caches prompts per call (the embedded llama.cpp server)
        self._cache = model if isinstance(model, PromptCaching) else None
        self._prefill = self._cache if settings.llm_prefill else None

    def system_prompt(self) -> str:
        """The agent's instructions and today's date (a caller says "tomorrow" or "tonight";
        it changes once a day, so the prompt stays a cached prefix all day)."""
        if not self.settings.llm_date_in_prompt:
            return self.settings.system_prompt
        today = datetime.date.today()
        return f"{self.settings.system_prompt}\nToday is {today:%A}, {today.day} {today:%B %Y}."

    async def history(self, call_id: str, turn_id: int) -> tuple[list[ChatTurn], str]:
        """Conversation before this turn from the memory service, and what to add to the
        system prompt (this call's summary, the caller's earlier calls); empty if memory
        cannot answer: the turn goes on without it."""
        req = ContextRequest(meta=self.bus.meta(call_id, turn_id, subjects.RPC_MEMORY_CONTEXT),
                             max_messages=self.settings.llm_context_messages)
        try:
            reply_msg = await self.bus.nc.request(subjects.RPC_MEMORY_CONTEXT,
                                                  req.SerializeToString(),
                                                  timeout=self.settings.memory_rpc_timeout_s,
                                                  headers=inject_headers())
            reply = decode(ContextReply, reply_msg.data)
        except Exception as exc:
            log.warning("memory context unavailable: %s", exc or type(exc).__name__)
            return [], ""
        if reply.error:
            log.warning("memory context error: %s", reply.error)
        turns = [ChatTurn(m.role, m.content) for m in reply.messages]
        return turns, context_preamble(reply.summary, reply.caller_memory)

    async def on_request(self, msg: Msg) -> None:
        req = decode(LlmRequest, msg.data)
        call_id, turn_id = req.meta.call_id, req.meta.turn_id
        subjects.llm_out(call_id)  # validates the id
        call_id_var.set(call_id)
        turn_id_var.set(turn_id)
        received_ns = time.time_ns()
        observe_hop("llm_request", req.meta.sent_unix_ns, received_ns)
        if self.stale.is_stale(call_id, turn_id):
            log.info("skipping cancelled turn")
            STALE_DROPPED.labels("llm").inc()
            return
        redelivered = deliveries(msg) > 1
        via = "queue" if (msg.reply or "").startswith("$JS.ACK") else "direct"
        log.info("turn started", extra={"redelivered": redelivered, "via": via, "queued_ms":
                                        round((received_ns - req.meta.sent_unix_ns) / 1e6)})
        # GenAI semantic conventions; conversation text stays off spans (privacy)
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": self.model.name, "gen_ai.conversation.id": call_id,
            "voxbus.turn_id": turn_id}
        with tracer().start_as_current_span(f"chat {self.model.name}", attributes=attributes):
            await self._generate(req, await self.messages(call_id, turn_id, req.user_text))

    async def messages(self, call_id: str, turn_id: int, user_text: str) -> list[ChatTurn]:
        """The turn's prompt. The system prompt first and unchanged in every call and turn: a
        local server reuses its cached evaluation; what varies (summary, caller notes) after."""
        history, preamble = await self.history(call_id, turn_id)
        return [ChatTurn("system", self.system_prompt()),
                *([ChatTurn("system", preamble.strip())] if preamble.strip() else []),
                *history, ChatTurn("user", user_text)]

    def _offered_tools(self) -> list[dict[str, object]] | None:
        """The tools a turn's first model call is offered (as TurnGeneration offers them)."""
        return (self.tools.definitions() or None) if self.max_steps > 1 else None

    async def on_prefill(self, msg: Msg) -> None:
        """The caller's words so far: have the model server evaluate the turn's prompt up to
        them, in the call's slot, so the turn pays only for the rest. One evaluation per call
        at a time; words that arrive meanwhile replace each other (only the newest counts)."""
        if self._prefill is None:
            return
        req = decode(LlmPrefill, msg.data)
        call_id = req.meta.call_id
        subjects.prefill_llm(call_id)  # validates the id
        if self.stale.is_stale(call_id, req.meta.turn_id) or not req.user_text.strip():
            return
        self._queue_prefill(call_id, req.meta.turn_id, req.user_text[:2000])

    def _queue_prefill(self, call_id: str, turn_id: int, what: str | list[ChatTurn]) -> None:
        if self._prefill is None:
            return
        self._prefill_next[call_id] = (turn_id, what)
        if call_id not in self._prefilling:
            self._prefilling[call_id] = asyncio.create_task(
                self._prefill_call(call_id, self._prefill))

    async def _prefill_call(self, call_id: str, model: PromptCaching) -> None:
        call_id_var.set(call_id)
        try:
            while call_id in self._prefill_next:
                turn_id, what = self._prefill_next.pop(call_id)
                turn_id_var.set(turn_id)
                started = time.perf_counter()
                try:
                    messages = (what if isinstance(what, list)
                                else await self.messages(call_id, turn_id, what))
                    await model.prefill(messages, self._offered_tools())
                except Exception as exc:  # a hint: the turn evaluates it all instead
                    log.info("prefill failed: %s", exc or type(exc).__name__)
                    continue
                log.debug("prefilled", extra={"ms": round((time.perf_counter() - started) * 1000)})
        finally:
            self._prefilling.pop(call_id, None)

    async def _generate(self, req: LlmRequest, messages: list[ChatTurn]) -> None:
        call_id, turn_id = req.meta.call_id, req.meta.turn_id
        out_subject = subjects.llm_out(call_id)

        async def send_text(text: str) -> None:
            await self.bus.publish(out_subject, TokenDelta(
                meta=self.bus.meta(call_id, turn_id, out_subject), text=text), traced=False)

        async def tool_started(name: str) -> None:
            await self.bus.publish(out_subject, TokenDelta(
                meta=self.bus.meta(call_id, turn_id, out_subject), tool_started=name))

        async def speak(clause: str, index: int, uninterruptible: bool) -> None:
            await self._speak(req, clause, index, uninterruptible)

        gen = TurnGeneration(call_id=call_id, turn_id=turn_id, model=self.model,
                             tools=self.tools, stale=self.stale, speak=speak,
                             send_text=send_text, tool_started=tool_started,
                             max_steps=self.max_steps, filler=self.filler,
                             preemptive=req.preemptive,
                             final_timeout_s=self.settings.llm_timeout_s)
        error = ""
        try:
            await gen.run(messages)
        except TurnCancelled:
            log.info("turn cancelled during generation")
            return
        except Exception as exc:  # the gateway must always learn that the turn ended
            error = f"{type(exc).__name__}: {exc}"
            ERRORS.labels("llm", "generation_failed").inc()
            log.error("generation failed: %s", error)
        if self.stale.is_stale(call_id, turn_id):
            return
        if not error and not gen.action and gen.full_text:
            # while the reply plays, the conversation as the next turn will show it (its tool
            # rounds left out), so the next turn does not re-evaluate the reply
            self._queue_prefill(call_id, turn_id + 1,
                                [*messages, ChatTurn("assistant", gen.full_text)])
        span = trace.get_current_span()
        span.set_attribute("gen_ai.usage.output_tokens", len(gen.parts))  # streamed deltas
        span.set_attribute("voxbus.time_to_first_token_ms", round(gen.first_token_ms, 1))
        span.set_attribute("voxbus.clauses", gen.clauses)
        await self.bus.publish(out_subject, TokenDelta(
            meta=self.bus.meta(call_id, turn_id, out_subject), done=True,
            full_text=gen.full_text, clause_count=gen.clauses, error=error,
            first_token_ms=gen.first_token_ms, action=gen.action,
            action_target=gen.action_target, tools_called=gen.tools_called))
        total_ms = round((time.perf_counter() - gen.started) * 1000)
        log.info("turn generated", extra={"clauses": gen.clauses, "total_ms": total_ms,
                                          "first_token_ms": round(gen.first_token_ms),
                                          "tools": ",".join(gen.tools_called) or "-"})

    async def _speak(self, req: LlmRequest, clause: str, index: int,
                     uninterruptible: bool = False) -> None:
        call_id, turn_id = req.meta.call_id, req.meta.turn_id
        subject = subjects.work_tts(call_id)
        tts = TtsRequest(meta=self.bus.meta(call_id, turn_id, subject), text=clause,
                         clause_index=index, sample_rate=req.sample_rate,
                         voice=self.settings.tts_voice, uninterruptible=uninterruptible)
        await self.bus.publish_acked(subject, tts, msg_id=f"{call_id}-{turn_id}-{index}",
                                     direct=True)

    async def warm(self) -> None:
        """A local model server caches the prompt prefix it evaluated last: have it evaluate
        the system prompt (and tools) now, in each slot calls are pinned to, so a caller's
        first turn pays only for its own words (seconds less on the embedded model). Hosted
        models are left alone."""
        host = urlparse(self.settings.llm_base_url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1") or self._cache is None:
            return
        messages = [ChatTurn("system", self.system_prompt()), ChatTurn("user", "Hello.")]
        started = time.perf_counter()
        try:
            await self._cache.warm(messages, self._offered_tools())
        except Exception as exc:  # the first turn pays for it instead
            log.warning("could not warm the model's prompt cache: %s", exc)
            return
        log.info("prompt cache warm", extra={"ms": round((time.perf_counter() - started) * 1000)})

    async def run(self, stop: asyncio.Event) -> None:
        await self.warm()
        await self.stale.follow(self.bus)
        await self.bus.subscribe(subjects.PREFILL_LLM_ALL, self.on_prefill, queue="llm-prefill")
        await self.bus.run_pull_worker(
            stream="VB_LLM_WORK", durable=subjects.LLM_POOL, subject="vb.work.llm.*",
            handler=self.on_request, concurrency=self.settings.llm_concurrency, stop=stop,
            ack_wait_s=self.settings.work_ack_wait_s,  # (claimed while it runs: bus.py)
            direct=True,  # a turn does not wait out a clustered queue's election
        )
