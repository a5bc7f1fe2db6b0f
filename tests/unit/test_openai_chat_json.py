"""OpenAIChat in "json" tool format against a fake llama.cpp server: what goes on the wire
(grammar instead of tools, the format before the agent's rules, the call's pinned slot) and
what comes back (say text streamed, a tool action parsed); warm-up copies slot 0."""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voxbus_common.config import Settings
from voxbus_common.logs import call_id_var
from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm.openai_chat import OpenAIChat

TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Search the menu.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"]}}}]


class FakeLlama:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.slot_ops: list[str] = []
        self.reply = ""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if not body.get("stream"):
            return web.json_response({"id": "x", "object": "chat.completion", "created": 0,
                                      "model": "m", "choices": [{"index": 0, "finish_reason":
                                      "length", "message": {"role": "assistant",
                                                            "content": "{"}}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        pieces = [self.reply[i:i + 4] for i in range(0, len(self.reply), 4)]
        for n, piece in enumerate(pieces):
            doc: dict[str, Any] = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                                   "model": "m", "choices": [{"index": 0, "delta": {
                                       "content": piece}, "finish_reason": None}]}
            if n == len(pieces) - 1:
                doc["timings"] = {"prompt_n": 12, "cache_n": 400, "prompt_ms": 150.0}
            await resp.write(f"data: {json.dumps(doc)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def slots(self, request: web.Request) -> web.Response:
        self.slot_ops.append(f"{request.match_info['id']}:{request.query['action']}")
        return web.json_response({"ok": True})


@pytest.fixture
async def llama() -> AsyncIterator[tuple[FakeLlama, OpenAIChat]]:
    fake = FakeLlama()
    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", fake.chat),
                    web.post("/slots/{id}", fake.slots)])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fields: dict[str, Any] = {"VOXBUS_LLM_BASE_URL": f"http://127.0.0.1:{server.port}/v1",
                              "llm_tool_format": "json", "llm_pin_slots": 4}
    settings = Settings(**fields)
    yield fake, OpenAIChat(settings)
    await server.close()


async def collect(chat: OpenAIChat, messages: list[ChatTurn]) -> list[str | ToolCall]:
    return [item async for item in chat.stream(messages, TOOLS)]


async def test_a_tool_action_goes_out_as_a_grammar_and_comes_back_as_a_call(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, chat = llama
    fake.reply = '{"tool": "lookup", "arguments": {"query": "vegan"}}'
    call_id_var.set("CA123")
    items = await collect(chat, [ChatTurn("system", "You run a trattoria."),
                                 ChatTurn("user", "anything vegan?")])
    assert [(i.name, json.loads(i.arguments)) for i in items if isinstance(i, ToolCall)] == [
        ("lookup", {"query": "vegan"})]
    body = fake.bodies[-1]
    assert "tools" not in body and body["grammar"].startswith("root ::= say | tool0")
    system = body["messages"][0]["content"]
    assert system.startswith("Reply with exactly one JSON object")
    assert system.endswith("You run a trattoria.") and "- lookup(query: string)" in system
    assert body["id_slot"] == zlib.crc32(b"CA123") % 4 and body["cache_prompt"] is True


async def test_say_text_streams_and_history_is_shown_as_actions(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, chat = llama
    fake.reply = '{"say": "We have pumpkin ravioli."}'
    items = await collect(chat, [ChatTurn("system", "S"), ChatTurn("user", "hi"),
                                 ChatTurn("assistant", "Hello!"), ChatTurn("user", "vegan?")])
    assert "".join(i for i in items if isinstance(i, str)) == "We have pumpkin ravioli."
    assert len([i for i in items if isinstance(i, str)]) > 1  # streamed, not at the end
    assert json.loads(fake.bodies[-1]["messages"][2]["content"]) == {"say": "Hello!"}


async def test_warm_evaluates_slot_0_once_and_copies_it_to_the_others(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, chat = llama
    await chat.warm([ChatTurn("system", "S"), ChatTurn("user", "Hello.")], TOOLS)
    assert [b["id_slot"] for b in fake.bodies] == [0]
    assert fake.slot_ops == ["0:save", "1:restore", "2:restore", "3:restore"]


async def test_the_reply_opens_with_an_assistant_prefix_echoed_or_not(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, chat = llama
    turns = [ChatTurn("system", "S"), ChatTurn("user", "hi")]
    fake.reply = '{"say":"Hello there."}'  # llama.cpp streams the prefix back first
    assert "".join(str(i) for i in await collect(chat, turns)) == "Hello there."
    assert fake.bodies[-1]["messages"][-1] == {"role": "assistant", "content": '{"'}
    assert fake.bodies[-1]["grammar"].splitlines()[1].startswith('say ::= "say\\":"')
    fake.reply = 'say":"Hello again."}'  # a server that sends only the continuation
    assert "".join(str(i) for i in await collect(chat, turns)) == "Hello again."


async def test_prefill_evaluates_the_turns_prompt_in_the_calls_slot(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, chat = llama
    call_id_var.set("CA77")
    turns = [ChatTurn("system", "S"), ChatTurn("user", "a table for two on")]
    await chat.prefill(turns, TOOLS)
    fake.reply = '{"say":"Sure."}'
    await collect(chat, [*turns[:1], ChatTurn("user", "a table for two on friday")])
    prefill, turn = fake.bodies
    assert prefill["stream"] is False and prefill["max_tokens"] == 1
    assert prefill["id_slot"] == turn["id_slot"] == zlib.crc32(b"CA77") % 4
    # the same prompt up to the caller's words: the turn finds it all cached
    assert prefill["messages"][0] == turn["messages"][0]
    assert turn["messages"][1]["content"].startswith(prefill["messages"][1]["content"])


async def test_prefill_without_pinned_slots_sends_nothing(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, pinned = llama
    fields: dict[str, Any] = {"VOXBUS_LLM_BASE_URL": str(pinned._client.base_url),
                              "llm_tool_format": "json"}
    unpinned = OpenAIChat(Settings(**fields))
    call_id_var.set("CA78")
    await unpinned.prefill([ChatTurn("user", "hello")], None)
    assert fake.bodies == []  # no slot of this call's to fill on a shared endpoint


async def test_a_prompt_ending_with_the_agents_reply_gets_no_second_assistant_message(
        llama: tuple[FakeLlama, OpenAIChat]) -> None:
    fake, chat = llama
    call_id_var.set("CA79")  # (llama.cpp refuses two assistant messages at the end)
    await chat.prefill([ChatTurn("system", "S"), ChatTurn("user", "hours?"),
                        ChatTurn("assistant", "From noon.")], TOOLS)
    last = fake.bodies[-1]["messages"][-2:]
    assert [m["role"] for m in last] == ["user", "assistant"]
    assert json.loads(last[1]["content"]) == {"say": "From noon."}
