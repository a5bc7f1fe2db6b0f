"""Summaries for the memory service (request/reply, queue group "llm"): any replica folds an
earlier summary and some turns into a short third-person summary with the service's model.

Requests are served one at a time per replica, so summaries never crowd out live turns on a
small local model; a request that waited longer than the requester's timeout is answered
with an error instead of being generated for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from nats.aio.msg import Msg

from voxbus.v1.llm_pb2 import SummarizeReply, SummarizeRequest
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.config import LlmService
from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_common.logs import call_id_var
from voxbus_common.metrics import ERRORS
from voxbus_common.providers import ChatModel, ChatTurn

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 24_000  # a guard against abuse; memory sends ~5k characters per request
MAX_MESSAGES = 400
WORDS_RANGE = (10, 200)

INSTRUCTION = (
    "You write short notes about a phone call for the assistant who will continue it. "
    "Write in the third person (\"The caller ...\"). Keep every fact the assistant may need "
    "later: names, numbers, dates, times, bookings, orders, preferences, open questions. "
    "Plain sentences, no lists, no greeting, at most {max_words} words."
)

_SPEAKER = {"user": "Caller", "assistant": "Assistant", "system": "Note"}


class BadSummarizeRequest(ValueError):
    """A request that cannot be summarized (too large, nothing in it)."""


def summary_prompt(req: SummarizeRequest, max_words: int) -> list[ChatTurn]:
    """The chat messages that ask the model for the summary."""
    lines = []
    for m in req.messages:
        text = " ".join(m.content.split())
        if text:
            cut = " (interrupted)" if m.interrupted else ""
            lines.append(f"{_SPEAKER.get(m.role, 'Caller')}: {text}{cut}")
    if not lines and not req.previous_summary.strip():
        raise BadSummarizeRequest("nothing to summarize")
    if len(req.messages) > MAX_MESSAGES:
        raise BadSummarizeRequest(f"more than {MAX_MESSAGES} messages")
    body = "\n".join(lines)
    if len(body) + len(req.previous_summary) > MAX_INPUT_CHARS:
        raise BadSummarizeRequest(f"input longer than {MAX_INPUT_CHARS} characters")
    user = ""
    if req.previous_summary.strip():
        user += f"Summary so far: {' '.join(req.previous_summary.split())}\n\n"
    if body:
        user += f"Conversation:\n{body}\n\n"
    user += "Write the updated summary."
    return [ChatTurn("system", INSTRUCTION.format(max_words=max_words)), ChatTurn("user", user)]


_PREAMBLE = re.compile(r"^\s*(?:(?:here'?s|here is)\b[^:\n]{0,60}:|(?:updated |new )?summary:)\s*",
                       re.IGNORECASE)


def clean_summary(text: str) -> str:
    """The summary without the "Here's the updated summary:" that small models open with."""
    return _PREAMBLE.sub("", text).strip()


def clamp_words(requested: int, default: int) -> int:
    low, high = WORDS_RANGE
    return max(low, min(high, requested or default))


def limit_words(text: str, max_words: int) -> str:
    """At most `max_words` words, ending at the last full sentence when there is one."""
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    cut = " ".join(words[:max_words])
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[:end + 1] if end > len(cut) // 2 else cut + "…"


class Summarizer:
    def __init__(self, bus: Bus, settings: LlmService, model: ChatModel) -> None:
        self.bus = bus
        self.settings = settings
        self.model = model
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_request(self, msg: Msg) -> None:
        """Queue the request and return, so draining the connection at shutdown never waits
        for a generation (an unanswered requester times out and retries later)."""
        task = asyncio.create_task(self.serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self, msg: Msg) -> None:
        async with self._one_at_a_time:
            await self._answer(msg)

    async def _answer(self, msg: Msg) -> None:
        reply = SummarizeReply()
        try:
            req = decode(SummarizeRequest, msg.data)
            reply.meta.CopyFrom(req.meta)
            call_id_var.set(validate_call_id(req.meta.call_id))
            reply.summary = await self.summarize(req)
        except (BadMessage, InvalidCallId, BadSummarizeRequest) as exc:
            reply.error = str(exc)
        except Exception as exc:  # the model failed or timed out: memory retries later
            ERRORS.labels("llm", "summary_failed").inc()
            reply.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            log.warning("summary failed: %s", reply.error)
        if msg.reply:
            await self.bus.nc.publish(msg.reply, reply.SerializeToString())

    async def summarize(self, req: SummarizeRequest) -> str:
        timeout = self.settings.llm_summarize_timeout_s
        waited_s = (time.time_ns() - req.meta.sent_unix_ns) / 1e9 if req.meta.sent_unix_ns else 0
        if waited_s > timeout:
            raise TimeoutError(f"request waited {waited_s:.1f} s, the requester gave up")
        max_words = clamp_words(req.max_words, self.settings.memory_summary_max_words)
        messages = summary_prompt(req, max_words)
        started = time.perf_counter()
        parts: list[str] = []
        async with asyncio.timeout(max(1.0, timeout - max(0.0, waited_s))):
            async for delta in self.model.stream(messages):
                if isinstance(delta, str):  # tool calls are not offered, ignore any
                    parts.append(delta)
        summary = limit_words(clean_summary("".join(parts)), max_words)
        if not summary:
            raise RuntimeError("the model returned no text")
        log.info("summary generated", extra={
            "messages": len(req.messages), "words": len(summary.split()),
            "total_ms": round((time.perf_counter() - started) * 1000)})
        return summary
