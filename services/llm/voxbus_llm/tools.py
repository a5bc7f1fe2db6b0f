"""The agent's tools as the model sees them (OpenAI function definitions) and as they run.

Built-ins: `end_call` and `transfer_call` do not act here: they become the turn's action,
which the gateway carries out once the caller has heard the reply. `lookup` searches the
agent's knowledge folder, so retrieval runs only when the model asks. Webhooks, Python
functions and MCP servers' tools are runners (`ToolRunner`) with the same rules: arguments
checked against the schema first, cut off at their timeout, read-only or not. A tool never
raises into the turn: any failure becomes a short result the model can apologise for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace

from voxbus_common.agent import Agent
from voxbus_common.metrics import TOOL_CALLS, TOOL_SECONDS
from voxbus_common.providers import ToolCall
from voxbus_common.telemetry import tracer
from voxbus_llm.text_tool_calls import MALFORMED
from voxbus_llm.tool_args import ArgumentCheck, BadArguments, parse_arguments
from voxbus_llm.webhook_tools import HttpSession, WebhookTool

if TYPE_CHECKING:
    from voxbus_llm.knowledge import KnowledgeBase
    from voxbus_llm.mcp_tools import McpServerTools

log = logging.getLogger(__name__)


class ToolRunner(Protocol):
    """A tool that runs outside the model: a webhook, a Python function, an MCP tool."""

    name: str
    read_only: bool
    timeout_s: float

    def definition(self) -> dict[str, Any]: ...

    async def __call__(self, args: dict[str, Any]) -> tuple[str, str]:
        """(what the model reads, outcome label for metrics)."""
        ...


@dataclass(frozen=True)
class ToolOutcome:
    result: str  # what the model reads
    action: str = ""  # end_call | transfer_call: the gateway acts after the reply
    target: str = ""


def _function(name: str, description: str, properties: dict[str, Any],
              required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


class ToolBox:
    """The tools one agent offers; stateless across turns (any replica serves any turn).
    `start()` connects the agent's MCP servers and imports its Python tools."""

    def __init__(self, agent: Agent | None, knowledge: KnowledgeBase | None = None) -> None:
        self.agent = agent
        self.knowledge = knowledge
        self._http = HttpSession()
        self.runners: dict[str, ToolRunner] = {}
        self._servers: list[McpServerTools] = []
        for hook in agent.tools.webhooks if agent else []:
            self._add(WebhookTool(hook, self._http))
        self._rebuild()

    @property
    def folder(self) -> Path | None:
        return Path(self.agent.source).parent if self.agent and self.agent.source else None

    async def start(self) -> None:
        if self.agent is None:
            return
        from voxbus_llm.python_tools import PythonFunctionTool

        for spec in self.agent.tools.python:  # a broken import fails the start, clearly
            self._add(PythonFunctionTool(spec, self.folder))
        if self.agent.tools.mcp:
            from voxbus_llm.mcp_tools import McpServerTools

            self._servers = [McpServerTools(s, self.folder) for s in self.agent.tools.mcp]
            await asyncio.gather(*(s.start() for s in self._servers))
            for server in self._servers:
                for tool in server.tools:
                    if tool.name in self.runners or tool.name in self._builtin_names():
                        log.warning("MCP tool %s of %s hides behind an earlier tool of that "
                                    "name: skipped", tool.name, server.spec.name)
                        continue
                    self._add(tool)
        self._rebuild()

    def _add(self, runner: ToolRunner) -> None:
        self.runners[runner.name] = runner

    def _rebuild(self) -> None:
        self._definitions = self._build()
        self.names = frozenset(d["function"]["name"] for d in self._definitions)
        self._checks = {d["function"]["name"]: ArgumentCheck(
            d["function"].get("parameters") or {"type": "object"}) for d in self._definitions}

    def definitions(self) -> list[dict[str, Any]]:
        """OpenAI tool definitions ([] when the agent has none: the model is not told)."""
        return self._definitions

    def _builtin_names(self) -> set[str]:
        return {d["function"]["name"] for d in self._builtins()}

    def _build(self) -> list[dict[str, Any]]:
        return self._builtins() + [r.definition() for r in self.runners.values()]

    def _builtins(self) -> list[dict[str, Any]]:
        if self.agent is None:
            return []
        tools = self.agent.tools
        defs: list[dict[str, Any]] = []
        if tools.end_call:
            defs.append(_function(
                "end_call", "End the phone call after your reply, when the caller is done or "
                "says goodbye. Say goodbye in the same reply.",
                {"reason": {"type": "string", "description": "why the call ends"}}, []))
        if tools.transfer_call is not None:
            targets = sorted(tools.transfer_call.targets)
            defs.append(_function(
                "transfer_call", tools.transfer_call.description,
                {"destination": {"type": "string", "enum": targets}}, ["destination"]))
        if tools.lookup and self.knowledge is not None:
            defs.append(_function(
                "lookup", "Search the business's own information (hours, menu, policies, "
                "address). Use it before answering factual questions about the business.",
                {"query": {"type": "string", "description": "what to look up"}}, ["query"]))
        return defs

    async def run(self, call: ToolCall, heard: str | None = None) -> ToolOutcome:
        """Run one tool call; errors become results, never exceptions. `heard`: what the
        caller said in this call, for arguments that must come from the caller."""
        started = time.perf_counter()
        with tracer().start_as_current_span(f"execute_tool {call.name}", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id}):
            outcome, status = await self._dispatch(call, heard)
            trace.get_current_span().set_attribute("voxbus.tool_outcome", status)
        label = call.name if self.known(call.name) else "unknown"
        TOOL_CALLS.labels(label, status).inc()
        TOOL_SECONDS.labels(label).observe(
            time.perf_counter() - started)
        log.info("tool called", extra={"tool": call.name, "outcome": status,
                                       "ms": round((time.perf_counter() - started) * 1000)})
        return outcome

    def known(self, name: str) -> bool:
        return name in self.names

    def has_side_effects(self, name: str) -> bool:
        """Runners not declared read_only; built-ins act only after the reply is heard."""
        runner = self.runners.get(name)
        return runner is not None and not runner.read_only

    async def _dispatch(self, call: ToolCall, heard: str | None) -> tuple[ToolOutcome, str]:
        if call.name == MALFORMED:
            log.warning("the model wrote a tool call that is not valid JSON",
                        extra={"text": call.arguments[:120]})
            return ToolOutcome('error: your tool call was not valid JSON. Write exactly '
                               '{"name": "<tool>", "arguments": {...}}, or answer in words.'
                               ), "malformed"
        if not self.known(call.name):
            log.warning("the model called an unknown tool", extra={"tool": call.name[:64]})
            return ToolOutcome(f"error: there is no tool named {call.name[:64]!r}; the tools "
                               f"are {', '.join(sorted(self.names))}"), "unknown_tool"
        try:
            args = parse_arguments(call.arguments)
            self._checks[call.name].check(args)
            if heard is not None:
                self._checks[call.name].check_heard(args, heard)
        except BadArguments as exc:
            log.warning("the model's arguments were rejected: %s", exc,
                        extra={"tool": call.name})
            return ToolOutcome(str(exc)), "bad_arguments"
        if call.name == "end_call":
            return ToolOutcome("ok: the call ends after your reply; say a short goodbye.",
                               action="end_call"), "ok"
        if call.name == "transfer_call":
            return self._transfer(args)
        if call.name == "lookup":
            query = str(args.get("query", "")).strip()
            if not query or self.knowledge is None:
                return ToolOutcome("error: give a query to look up"), "bad_arguments"
            return ToolOutcome(self.knowledge.answer_text(query)), "ok"
        return await self._run_runner(self.runners[call.name], args)

    async def _run_runner(self, runner: ToolRunner, args: dict[str, Any]
                          ) -> tuple[ToolOutcome, str]:
        try:
            async with asyncio.timeout(runner.timeout_s):
                result, status = await runner(args)
        except TimeoutError:
            log.warning("tool %s cut off at its timeout", runner.name)
            return ToolOutcome(f"error: {runner.name} did not answer within "
                               f"{runner.timeout_s:g} s"), "timeout"
        except Exception as exc:  # a Python tool's own exception
            log.warning("tool %s failed: %s: %s", runner.name, type(exc).__name__, exc)
            return ToolOutcome(f"error: {runner.name} failed"), "failed"
        return ToolOutcome(result), status

    def _transfer(self, args: dict[str, Any]) -> tuple[ToolOutcome, str]:
        assert self.agent is not None and self.agent.tools.transfer_call is not None
        targets = self.agent.tools.transfer_call.targets
        destination = str(args.get("destination", ""))
        if destination not in targets:
            return ToolOutcome(f"error: destination must be one of {', '.join(sorted(targets))}"
                               ), "bad_arguments"
        return ToolOutcome(f"ok: after your reply the caller is put through to {destination}; "
                           "tell them so in a few words.", action="transfer_call",
                           target=targets[destination]), "ok"

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._servers))
        await self._http.close()
