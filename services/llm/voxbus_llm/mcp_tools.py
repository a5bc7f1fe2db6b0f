"""MCP tools: an agent names MCP servers (a command over stdio, or a streamable-HTTP URL);
their tools are listed at start and called through the official `mcp` SDK.

One task per server owns the SDK client (anyio scopes are entered and left in one task).
A call that finds the connection broken (the server crashed, the socket closed) reports it,
answers the model with an error, and has the task reconnect (a stdio server is started
again); after `max_restarts` failures in a row the server is turned off and its tools answer
"unavailable". A call that hangs is cut off at the server's timeout; the connection stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from voxbus_common.agent import McpServer
from voxbus_common.metrics import MCP_SERVER_EVENTS
from voxbus_llm.tool_args import MAX_RESULT_CHARS

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
RETRY_DELAY_S = 1.0  # between reconnects; doubles to 8 s


class McpServerTools:
    """One MCP server's connection and its tools."""

    def __init__(self, spec: McpServer, folder: Path | None) -> None:
        self.spec = spec
        self.folder = folder
        self.tools: list[McpTool] = []
        self.disabled = False
        self.failures = 0  # in a row
        self._client: Client | None = None
        self._up = asyncio.Event()
        self._broken = asyncio.Event()
        self._first = asyncio.Event()  # the first connect succeeded or failed
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def _target(self) -> StdioServerParameters | str:
        if self.spec.url:
            return self.spec.url
        assert self.spec.command
        command = [sys.executable if c == "{python}" else c for c in self.spec.command]
        return StdioServerParameters(command=command[0], args=command[1:],
                                     env=self.spec.env or None,
                                     cwd=str(self.folder) if self.folder else None)

    async def start(self) -> None:
        """Connect and list the tools (at most CONNECT_TIMEOUT_S); a server that cannot be
        reached is reported and retried in the background, its tools absent meanwhile."""
        self._task = asyncio.create_task(self._keep_connected(), name=f"mcp {self.spec.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), CONNECT_TIMEOUT_S)

    async def _keep_connected(self) -> None:
        delay = RETRY_DELAY_S
        while not self._closing:
            try:
                async with Client(self._target(), read_timeout_seconds=self.spec.timeout_s
                                  ) as client:
                    listing = await client.list_tools()
                    self._adopt(listing.tools)
                    self._client = client
                    self._broken.clear()
                    self._up.set()
                    self._first.set()
                    MCP_SERVER_EVENTS.labels(self.spec.name, "connected").inc()
                    log.info("MCP server connected", extra={
                        "server": self.spec.name, "tools": ",".join(t.name for t in self.tools)})
                    delay = RETRY_DELAY_S
                    await self._broken.wait()
            except Exception as exc:  # the SDK raises several kinds; all mean "not connected"
                self._fail(f"{type(exc).__name__}: {exc}")
            finally:
                self._client = None
                self._up.clear()
            self._first.set()
            if self._closing or self.disabled:
                return
            await asyncio.sleep(delay)  # back off before starting the server again
            delay = min(delay * 2, 8.0)

    def _fail(self, why: str) -> None:
        if self._closing:
            return
        self.failures += 1
        MCP_SERVER_EVENTS.labels(self.spec.name, "failed").inc()
        log.error("MCP server failed: %s", why, extra={"server": self.spec.name,
                                                        "failures": self.failures})
        if self.failures > self.spec.max_restarts:
            self.disabled = True
            MCP_SERVER_EVENTS.labels(self.spec.name, "disabled").inc()
            log.error("MCP server turned off after %d failures in a row", self.failures,
                      extra={"server": self.spec.name})

    def _adopt(self, listed: list[Any]) -> None:
        wanted = set(self.spec.tools) if self.spec.tools is not None else None
        self.tools = [McpTool(self, t.name, t.description or t.name.replace("_", " "),
                              t.input_schema or {"type": "object", "properties": {}})
                      for t in listed if wanted is None or t.name in wanted]

    async def call(self, name: str, args: dict[str, Any]) -> tuple[str, str]:
        if self.disabled:
            return f"error: {name} is unavailable right now", "unavailable"
        try:
            await asyncio.wait_for(self._up.wait(), self.spec.timeout_s)
        except TimeoutError:
            return f"error: {name} is unavailable right now", "unavailable"
        client = self._client
        if client is None:
            return f"error: {name} is unavailable right now", "unavailable"
        try:
            result = await client.call_tool(name, args)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise TimeoutError from None
            if exc.code == CONNECTION_CLOSED:  # the server died or hung up
                return self._lost(client, name, f"{name}: connection closed")
            log.warning("MCP tool %s answered an error: %s", name, exc)
            return f"error: {name} failed: {str(exc)[:200]}", "tool_error"
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the connection is gone: report it, reconnect
            return self._lost(client, name, f"{name}: {type(exc).__name__}: {exc}")
        self.failures = 0
        text = _result_text(result)
        return (f"error: {text}" if result.is_error else text), (
            "tool_error" if result.is_error else "ok")

    def _lost(self, client: Client, name: str, why: str) -> tuple[str, str]:
        """A call found the connection broken: report it once, have the task reconnect."""
        if self._client is client:
            self._client = None
            self._up.clear()
            self._fail(why)
            self._broken.set()
        return f"error: {name} is unavailable right now", "unavailable"

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        self._broken.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except (TimeoutError, Exception):
                self._task.cancel()


def _result_text(result: Any) -> str:
    parts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    if not parts and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, default=str)]
    return ("\n".join(parts) or "(empty result)")[:MAX_RESULT_CHARS]


class McpTool:
    """One of a server's tools, as the tool box runs it."""

    def __init__(self, server: McpServerTools, name: str, description: str,
                 schema: dict[str, Any]) -> None:
        self.server = server
        self.name = name
        self.read_only = server.spec.is_read_only(name)
        self.timeout_s = server.spec.timeout_s
        self._definition = {"type": "function", "function": {
            "name": name, "description": description, "parameters": schema}}

    def definition(self) -> dict[str, Any]:
        return self._definition

    async def __call__(self, args: dict[str, Any]) -> tuple[str, str]:
        return await self.server.call(self.name, args)
