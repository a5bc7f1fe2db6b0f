"""ChatModel over any OpenAI-compatible endpoint (the embedded llama.cpp server by default)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI, AsyncStream

from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm.text_tool_calls import TextToolCalls


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
    """Streaming chat completions with the openai SDK; base URL and key come from config."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.llm_model
        self._max_tokens = settings.llm_max_tokens
        self._temperature = settings.llm_temperature
        self._client = AsyncOpenAI(
            base_url=settings.llm_base_url or None,
            api_key=settings.llm_api_key or "not-needed-for-local",
            timeout=settings.llm_timeout_s,
            max_retries=1,
        )

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        extra: dict[str, Any] = {"tools": tools, "tool_choice": "auto"} if tools else {}
        response = await self._client.chat.completions.create(
            model=self.name,
            messages=[wire_message(m) for m in messages],  # type: ignore[misc]
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            stream=True,
            **extra,
        )
        assert isinstance(response, AsyncStream)
        pending = ToolCallParts()
        as_text = TextToolCalls()  # calls a local server left as text: held, never spoken
        try:
            async for chunk in response:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    spoken = as_text.push(delta.content)
                    if spoken:
                        yield spoken
                for call in delta.tool_calls or ():
                    fn = call.function
                    pending.add(call.index, call.id, fn.name if fn else None,
                                fn.arguments if fn else None)
        finally:
            await response.close()
        rest, text_calls = as_text.finish()
        if rest:
            yield rest
        for tool_call in text_calls:
            yield tool_call
        for tool_call in pending.calls():
            yield tool_call
