"""Tools: the OpenAI adapter assembles streamed tool calls, the tool box runs them (webhook,
lookup, actions), and a turn's generation feeds results back, says a filler while a tool is
slow, waits for the final transcript before side effects, and stops at once when cancelled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from voxbus.v1.call_pb2 import CallEvent
from voxbus_common.agent import Agent, Filler, parse_agent
from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_common.turns import StaleTurns
from voxbus_llm.generation import TurnCancelled, TurnGeneration
from voxbus_llm.knowledge import KnowledgeBase
from voxbus_llm.openai_chat import OpenAIChat, wire_message
from voxbus_llm.tools import ToolBox, ToolOutcome
from voxbus_testkit.scripted_llm import HOOKS, REQUESTS, make_app

Server = Callable[..., Awaitable[tuple[str, web.Application]]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    runners: list[web.AppRunner] = []

    async def start(rules: list[dict[str, Any]] | None = None,
                    hook_delay: float = 0.0) -> tuple[str, web.Application]:
        app = make_app(rules or [], hook_delay)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}", app

    yield start
    for runner in runners:
        await runner.cleanup()


def agent_with(base: str, extra: str = "", hook: str = "stock", source: str = "t.yaml") -> Agent:
    return parse_agent(f"""
name: t
instructions: be brief
tools:
  end_call: true
  transfer_call: {{targets: {{manager: "+15550100"}}}}
  webhooks:
    - name: {hook}
      description: check the stock
      url: {base}/hooks/{hook}
      timeout_s: 2
      auth_header_env: TEST_TOOL_TOKEN
      parameters: {{type: object, properties: {{item: {{type: string}}}}, required: [item]}}
{extra}""", source)


async def test_openai_adapter_assembles_streamed_tool_calls(server: Server) -> None:
    base, app = await server([{"when": "ring", "tool": "stock", "say": "Let me see.",
                               "arguments": {"item": "gold ring"}}])
    model = OpenAIChat(Settings().model_copy(update={"llm_base_url": f"{base}/v1",
                                                      "llm_model": "scripted"}))
    tools = ToolBox(agent_with(base)).definitions()
    out = [d async for d in model.stream([ChatTurn("user", "a gold ring")], tools)]
    assert "".join(d for d in out if isinstance(d, str)) == "Let me see. "
    assert out[-1] == ToolCall(id="call_0", name="stock", arguments='{"item": "gold ring"}')
    sent = app[REQUESTS][0]
    assert sent["tool_choice"] == "auto" and {t["function"]["name"] for t in sent["tools"]} == {
        "end_call", "transfer_call", "stock"}


def test_wire_format_of_tool_turns() -> None:
    call = ToolCall("c1", "stock", '{"item": "x"}')
    assert wire_message(ChatTurn("assistant", "", tool_calls=(call,))) == {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "stock", "arguments": '{"item": "x"}'}}]}
    assert wire_message(ChatTurn("tool", "yes", tool_call_id="c1")) == {
        "role": "tool", "tool_call_id": "c1", "content": "yes"}


async def test_webhook_tool_sends_arguments_and_secret(server: Server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TOOL_TOKEN", "s3cret")
    base, app = await server()
    box = ToolBox(agent_with(base))
    outcome = await box.run(ToolCall("c", "stock", '{"item": "ring"}'))
    assert outcome == ToolOutcome('{"message": "stock says yes for {\\"item\\": \\"ring\\"}."}')
    assert app[HOOKS][0]["authorization"] == "Bearer s3cret"
    await box.close()


async def test_tool_failures_become_results(server: Server) -> None:
    base, _ = await server(hook_delay=5.0)
    box = ToolBox(agent_with(base, hook="slow"))
    assert (await box.run(ToolCall("c", "slow", '{"item": "x"}'))).result == \
        "error: slow did not answer within 2 s"
    assert (await box.run(ToolCall("c", "slow", "{}"))).result == "error: missing argument 'item'"
    assert (await box.run(ToolCall("c", "slow", "{not json"))).result.startswith("error: the a")
    assert "no tool named 'nope'" in (await box.run(ToolCall("c", "nope", "{}"))).result
    unreachable = ToolBox(agent_with("http://127.0.0.1:9", hook="down"))
    assert (await unreachable.run(ToolCall("c", "down", '{"item": "x"}'))).result == \
        "error: down could not be reached"
    await box.close()
    await unreachable.close()


async def test_actions_and_lookup(tmp_path: Path) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "hours.md").write_text("# Opening hours\n\nWe open at noon on Sundays.\n")
    agent = agent_with("http://127.0.0.1:9", extra="  lookup: true\nknowledge: kb\n",
                       source=str(tmp_path / "agent.yaml"))
    folder = agent.knowledge_dir()
    assert folder is not None
    box = ToolBox(agent, KnowledgeBase.from_folder(folder))
    assert "lookup" in box.names
    found = await box.run(ToolCall("c", "lookup", '{"query": "when do you open on sunday"}'))
    assert "noon on Sundays" in found.result
    end = await box.run(ToolCall("c", "end_call", '{"reason": "done"}'))
    assert end.action == "end_call"
    transfer = await box.run(ToolCall("c", "transfer_call", '{"destination": "manager"}'))
    assert (transfer.action, transfer.target) == ("transfer_call", "+15550100")
    wrong = await box.run(ToolCall("c", "transfer_call", '{"destination": "ceo"}'))
    assert wrong.action == "" and "must be one of: manager" in wrong.result


class ScriptedModel:
    """A chat model double: asks for `tool` until it sees a tool result, then answers."""

    name = "scripted"

    def __init__(self, tool: str = "stock", always_tool: bool = False) -> None:
        self.tool, self.always_tool = tool, always_tool
        self.offered: list[bool] = []

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        self.offered.append(bool(tools))
        if tools and (self.always_tool or messages[-1].role != "tool"):
            yield ToolCall(f"c{len(self.offered)}", self.tool, '{"item": "ring"}')
            return
        result = messages[-1].content if messages[-1].role == "tool" else "nothing"
        for word in f"The answer is {result}.".split(" "):
            yield word + " "


class GatedBox(ToolBox):
    """Tool runs wait for a gate the test opens (event-based, no timing)."""

    def __init__(self, agent: Agent, gate: asyncio.Event) -> None:
        super().__init__(agent)
        self.gate = gate
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self, call: ToolCall, heard: str | None = None) -> ToolOutcome:
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ToolOutcome("in stock")


def generation(box: ToolBox, model: ScriptedModel, stale: StaleTurns, said: list[str],
               on_say: Callable[[str], None] = lambda _: None, **kw: Any) -> TurnGeneration:
    async def speak(clause: str, index: int, uninterruptible: bool = False) -> None:
        said.append(clause)
        on_say(clause)

    async def send(text: str) -> None:
        return None

    return TurnGeneration(call_id="c1", turn_id=3, model=model, tools=box, stale=stale,
                          speak=speak, send_text=send, **kw)


async def test_slow_tool_gets_a_filler_and_its_result_is_spoken() -> None:
    gate = asyncio.Event()
    box = GatedBox(agent_with("http://127.0.0.1:9"), gate)
    said: list[str] = []
    gen = generation(box, ScriptedModel(), StaleTurns(), said,
                     on_say=lambda clause: gate.set(), filler=Filler(after_ms=0, text="One sec."))
    await asyncio.wait_for(gen.run([ChatTurn("user", "ring?")]), 30)
    assert said[0] == "One sec."  # the filler opened the gate: said before the result
    assert "The answer is in stock." in " ".join(said[1:])
    assert gen.tools_called == ["stock"] and gen.full_text.startswith("One sec.")


async def test_cancel_abandons_a_running_tool() -> None:
    box = GatedBox(agent_with("http://127.0.0.1:9"), asyncio.Event())  # never opens
    stale = StaleTurns()
    gen = generation(box, ScriptedModel(), stale, [], filler=Filler(text=""))
    task = asyncio.create_task(gen.run([ChatTurn("user", "ring?")]))
    await asyncio.wait_for(box.started.wait(), 30)
    stale.cancel("c1", 3)  # the caller barged in
    with pytest.raises(TurnCancelled):
        await asyncio.wait_for(task, 30)
    assert box.cancelled


async def test_side_effects_wait_for_the_final_transcript() -> None:
    gate = asyncio.Event()
    gate.set()
    box = GatedBox(agent_with("http://127.0.0.1:9"), gate)
    stale = StaleTurns()
    said: list[str] = []
    gen = generation(box, ScriptedModel(), stale, said, preemptive=True, filler=Filler(text=""))
    task = asyncio.create_task(gen.run([ChatTurn("user", "ring?")]))
    await asyncio.sleep(0)  # let it reach the wait (no tool may start before the final)
    assert not box.started.is_set()
    final = CallEvent(user_turn=CallEvent.UserTurn(text="ring?"))
    final.meta.call_id, final.meta.turn_id = "c1", 3
    stale.observe(final)
    await asyncio.wait_for(task, 30)
    assert box.started.is_set() and "in stock" in " ".join(said)


async def test_step_limit_forces_an_answer() -> None:
    model = ScriptedModel(always_tool=True)
    gate = asyncio.Event()
    gate.set()
    said: list[str] = []
    gen = generation(GatedBox(agent_with("http://127.0.0.1:9"), gate), model, StaleTurns(),
                     said, max_steps=3, filler=Filler(text=""))
    await asyncio.wait_for(gen.run([ChatTurn("user", "ring?")]), 30)
    assert model.offered == [True, True, False]  # the last step offers no tools
    assert gen.tools_called == ["stock", "stock"]
    assert said == ["The answer is in stock."]  # the forced answer, after two tool rounds


async def test_an_argument_marked_from_caller_must_be_words_the_caller_said() -> None:
    from voxbus_common.agent import parse_agent

    agent = parse_agent(json.dumps({"name": "t", "instructions": "i", "tools": {"webhooks": [{
        "name": "book", "description": "d", "url": "http://127.0.0.1:9/none", "parameters": {
            "type": "object", "properties": {"name": {"type": "string", "x-from-caller": True}},
            "required": ["name"]}}]}}), "test")
    box = ToolBox(agent)
    outcome = await box.run(ToolCall("c", "book", '{"name": "John Doe"}'), heard="a table please")
    assert outcome.result.startswith("error: the caller has not said the name 'John Doe'")
    await box.close()
