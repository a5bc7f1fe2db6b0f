"""The agent's tools as the model sees them (OpenAI function definitions) and as they run.

Built-ins: `end_call` and `transfer_call` do not act here: they become the turn's action,
which the gateway carries out once the caller has heard the reply. `lookup` searches the
agent's knowledge folder, so retrieval runs only when the model asks. Webhooks POST (or GET)
the model's arguments to a URL from the agent file. A tool never raises into the turn: any
failure becomes a short result the model can apologise for.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from opentelemetry import trace

from voxbus_common.agent import Agent, Webhook
from voxbus_common.metrics import TOOL_CALLS, TOOL_SECONDS
from voxbus_common.providers import ToolCall
from voxbus_common.telemetry import tracer

if TYPE_CHECKING:
    from voxbus_llm.knowledge import KnowledgeBase

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 1500  # a tool result is read by a small model and spoken: keep it short


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
    """The tools one agent offers; stateless across turns (any replica serves any turn)."""

    def __init__(self, agent: Agent | None, knowledge: KnowledgeBase | None = None) -> None:
        self.agent = agent
        self.knowledge = knowledge
        self.webhooks = {w.name: w for w in agent.tools.webhooks} if agent else {}
        self._http: aiohttp.ClientSession | None = None
        self._definitions = self._build()
        self.names = frozenset(d["function"]["name"] for d in self._definitions)

    def definitions(self) -> list[dict[str, Any]]:
        """OpenAI tool definitions ([] when the agent has none: the model is not told)."""
        return self._definitions

    def _build(self) -> list[dict[str, Any]]:
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
        for hook in tools.webhooks:
            defs.append({"type": "function", "function": {
                "name": hook.name, "description": hook.description,
                "parameters": hook.parameters}})
        return defs

    async def run(self, call: ToolCall) -> ToolOutcome:
        """Run one tool call; errors become results, never exceptions."""
        started = time.perf_counter()
        with tracer().start_as_current_span(f"execute_tool {call.name}", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id}):
            outcome, status = await self._dispatch(call)
            trace.get_current_span().set_attribute("voxbus.tool_outcome", status)
        TOOL_CALLS.labels(call.name if self.known(call.name) else "unknown", status).inc()
        TOOL_SECONDS.labels(call.name if self.known(call.name) else "unknown").observe(
            time.perf_counter() - started)
        log.info("tool called", extra={"tool": call.name, "outcome": status,
                                       "ms": round((time.perf_counter() - started) * 1000)})
        return outcome

    def known(self, name: str) -> bool:
        return name in self.names

    def has_side_effects(self, name: str) -> bool:
        """Webhooks not declared read_only; built-ins act only after the reply is heard."""
        hook = self.webhooks.get(name)
        return hook is not None and not hook.read_only

    async def _dispatch(self, call: ToolCall) -> tuple[ToolOutcome, str]:
        if not self.known(call.name):
            return ToolOutcome(f"error: there is no tool named {call.name!r}"), "unknown_tool"
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError:
            return ToolOutcome("error: the arguments were not valid JSON"), "bad_arguments"
        if not isinstance(args, dict):
            return ToolOutcome("error: the arguments must be a JSON object"), "bad_arguments"
        if call.name == "end_call":
            return ToolOutcome("The call will end after your reply.", action="end_call"), "ok"
        if call.name == "transfer_call":
            return self._transfer(args)
        if call.name == "lookup":
            query = str(args.get("query", "")).strip()
            if not query or self.knowledge is None:
                return ToolOutcome("error: give a query to look up"), "bad_arguments"
            return ToolOutcome(self.knowledge.answer_text(query)), "ok"
        return await self._webhook(self.webhooks[call.name], args)

    def _transfer(self, args: dict[str, Any]) -> tuple[ToolOutcome, str]:
        assert self.agent is not None and self.agent.tools.transfer_call is not None
        targets = self.agent.tools.transfer_call.targets
        destination = str(args.get("destination", ""))
        if destination not in targets:
            return ToolOutcome(f"error: destination must be one of {', '.join(sorted(targets))}"
                               ), "bad_arguments"
        return ToolOutcome(f"The caller will be transferred to {destination} after your "
                           "reply.", action="transfer_call", target=targets[destination]), "ok"

    async def _webhook(self, hook: Webhook, args: dict[str, Any]) -> tuple[ToolOutcome, str]:
        missing = [k for k in hook.parameters.get("required", []) if k not in args]
        if missing:
            return ToolOutcome(f"error: missing argument(s) {', '.join(missing)}"), \
                "bad_arguments"
        headers = {"User-Agent": "voxbus-tool/1"}
        if hook.auth_header_env:
            secret = os.environ.get(hook.auth_header_env, "")
            if secret:
                headers["Authorization"] = f"{hook.auth_scheme} {secret}".strip()
        if self._http is None:
            self._http = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
        try:
            if hook.method == "GET":
                request = self._http.get(hook.url, params={k: str(v) for k, v in args.items()},
                                         headers=headers, timeout=timeout)
            else:
                request = self._http.post(hook.url, json=args, headers=headers, timeout=timeout)
            async with request as resp:
                body = (await resp.text(errors="replace"))[:MAX_RESULT_CHARS]
                if resp.status >= 400:
                    log.warning("tool %s answered HTTP %d", hook.name, resp.status)
                    return ToolOutcome(f"error: the {hook.name} service answered HTTP "
                                       f"{resp.status}"), "http_error"
                return ToolOutcome(body or "(empty result)"), "ok"
        except TimeoutError:
            return ToolOutcome(f"error: {hook.name} did not answer within "
                               f"{hook.timeout_s:g} s"), "timeout"
        except aiohttp.ClientError as exc:
            log.warning("tool %s failed: %s", hook.name, exc)
            return ToolOutcome(f"error: {hook.name} could not be reached"), "unreachable"

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
