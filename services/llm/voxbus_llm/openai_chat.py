"""ChatModel over any OpenAI-compatible endpoint (the embedded llama.cpp server by default)."""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from openai import AsyncOpenAI, AsyncStream

from voxbus_common.config import LlmService
from voxbus_common.logs import call_id_var
from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm import json_actions
from voxbus_llm.text_tool_calls import TextToolCalls

log = logging.getLogger(__name__)


def wire_message(m: ChatTurn) -> dict[str, Any]:
    """One message in the Chat Completions wire format."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        msg["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
        msg["content"] = m.content or None
    return msg


@dataclass
class ToolCallParts:
    """Tool calls arrive in pieces keyed by index: the id and name first, the JSON arguments
    in fragments after. They are complete only when the stream ends."""

    parts: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, index: int, call_id: str | None, name: str | None, args: str | None) -> None:
        part = self.parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
        part["id"] = call_id or part["id"]
        if name:  # some servers send the name once, some in fragments, some repeat it
            part["name"] = name if name == part["name"] else part["name"] + name
        part["arguments"] += args or ""

    def calls(self) -> list[ToolCall]:
        return [ToolCall(id=p["id"] or f"call_{i}", name=p["name"], arguments=p["arguments"])
                for i, p in sorted(self.parts.items()) if p["name"]]


class OpenAIChat:
    """Streaming chat completions with the openai SDK; base URL and key come from config.
    With `llm_tool_format = "json"` tools reach the model as grammar-forced JSON actions
    (voxbus_llm.json_actions) instead of the API's tools field."""

    def __init__(self, settings: LlmService) -> None:
        self.name = settings.llm_model
        self._max_tokens = settings.llm_max_tokens
        self._temperature = settings.llm_temperature
        self._json = settings.llm_tool_format == "json"
        self._pin_slots = settings.llm_pin_slots
        self._tool_prompt = ""  # the tools' part of the system prompt, fixed once seen
        self._client = AsyncOpenAI(
            base_url=settings.llm_base_url or None,
            api_key=settings.llm_api_key or "not-needed-for-local",
            timeout=settings.llm_timeout_s,
            max_retries=1,
        )

    def slot(self) -> int | None:
        """The llama.cpp slot this call's turns go to, so its prompt stays cached there."""
        call_id = call_id_var.get()
        if self._pin_slots <= 0 or not call_id or call_id == "-":
            return None
        return zlib.crc32(call_id.encode()) % self._pin_slots

    def _request(self, messages: list[ChatTurn], tools: list[dict[str, Any]] | None,
                 slot: int | None) -> dict[str, Any]:
        extra_body: dict[str, Any] = {}
        if slot is not None:
            extra_body.update(id_slot=slot, cache_prompt=True)
        if not self._json:
            wire = [wire_message(m) for m in messages]
            extra: dict[str, Any] = {"tools": tools, "tool_choice": "auto"} if tools else {}
            return {"messages": wire, "extra_body": extra_body or None, **extra}
        if tools and not self._tool_prompt:
            self._tool_prompt = json_actions.tool_prompt(tools)
        wire = json_actions.wire_messages(messages)
        if wire and wire[0]["role"] == "system":  # the format first, the agent's own rules
            # and examples after it, nearest to the conversation: small models follow those
            wire[0] = {"role": "system", "content": (
                self._tool_prompt or json_actions.tool_prompt(None)).lstrip()
                + "\n\n" + wire[0]["content"]}
        # the reply's opening `{"` as an assistant prefix the server continues (evaluated with
        # the prompt: one token fewer to decode before speech), the rest forced by the grammar
        if wire[-1]["role"] != "assistant":  # (a prompt that ends with a reply: a prefill)
            wire.append({"role": "assistant", "content": json_actions.OPEN})
        extra_body["grammar"] = json_actions.action_grammar(tools)
        return {"messages": wire, "extra_body": extra_body}

    async def warm(self, messages: list[ChatTurn], tools: list[dict[str, Any]] | None) -> None:
        """Have a local server evaluate (and cache) the prompt prefix now, in every slot calls
        are pinned to: a call's first turn then pays only for its own words. llama.cpp's
        server evaluates it once and copies slot 0 into the others (a file save and restore,
        when it was started with --slot-save-path), else each slot evaluates it."""
        slots = list(range(self._pin_slots)) if self._pin_slots > 0 else [None]
        await self._evaluate(messages, tools, slots[0])
        if len(slots) == 1:
            return
        server = str(self._client.base_url).rstrip("/").removesuffix("/v1")
        body = {"filename": "voxbus-warm.bin"}
        try:
            async with aiohttp.ClientSession(raise_for_status=True,
                                             timeout=aiohttp.ClientTimeout(total=60)) as http:
                async with http.post(f"{server}/slots/0?action=save", json=body):
                    pass
                for slot in slots[1:]:
                    async with http.post(f"{server}/slots/{slot}?action=restore", json=body):
                        pass
            return
        except aiohttp.ClientError as exc:
            log.info("slot copy unavailable (%s): evaluating the prompt in each slot", exc)
        for slot in slots[1:]:
            await self._evaluate(messages, tools, slot)

    async def _evaluate(self, messages: list[ChatTurn], tools: list[dict[str, Any]] | None,
                        slot: int | None) -> dict[str, Any]:
        """Evaluate a prompt into the slot's cache (one token generated, discarded); returns
        llama.cpp's timings ({} from other servers)."""
        response = await self._client.chat.completions.create(
            model=self.name, max_tokens=1, temperature=0.0, stream=False,
            **self._request(messages, tools, slot))
        return dict((response.model_extra or {}).get("timings") or {})

    async def prefill(self, messages: list[ChatTurn],
                      tools: list[dict[str, Any]] | None) -> None:
        """Have the call's slot evaluate this prompt now (the caller is still speaking), so
        the turn's request finds all but its last words cached. Only with pinned slots: on
        a shared or hosted endpoint there is no cache of this call's to fill."""
        slot = self.slot()
        if slot is None:
            return
        timings = await self._evaluate(messages, tools, slot)
        log.debug("prompt prefilled", extra={"prompt_tokens": timings.get("prompt_n"),
                                             "cached_tokens": timings.get("cache_n")})

    def stream(self, messages: list[ChatTurn],
               tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        return self._stream(messages, tools, self.slot())

    async def _stream(self, messages: list[ChatTurn], tools: list[dict[str, Any]] | None,
                      slot: int | None) -> AsyncIterator[str | ToolCall]:
        response = await self._client.chat.completions.create(
            model=self.name,
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            stream=True,
            **self._request(messages, tools, slot),
        )
        assert isinstance(response, AsyncStream)
        pending = ToolCallParts()
        as_text = TextToolCalls()  # calls a local server left as text: held, never spoken
        actions = json_actions.ActionStream(prefix=json_actions.OPEN)
        try:
            async for chunk in response:
                timings = (chunk.model_extra or {}).get("timings")
                if timings:  # llama.cpp: how much of the prompt was evaluated, how much reused
                    log.info("prompt evaluated", extra={
                        "prompt_tokens": timings.get("prompt_n"),
                        "cached_tokens": timings.get("cache_n"),
                        "prompt_ms": round(float(timings.get("prompt_ms") or 0))})
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    spoken = (actions.push(delta.content) if self._json
                              else as_text.push(delta.content))
                    if spoken:
                        yield spoken
                for call in delta.tool_calls or ():
                    fn = call.function
                    pending.add(call.index, call.id, fn.name if fn else None,
                                fn.arguments if fn else None)
        finally:
            await response.close()
        if self._json:
            for tool_call in actions.finish():
                yield tool_call
            return
        rest, text_calls = as_text.finish()
        if rest:
            yield rest
        for tool_call in text_calls:
            yield tool_call
        for tool_call in pending.calls():
            yield tool_call
