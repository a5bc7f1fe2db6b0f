"""MCP tools through the official SDK against a real MCP server process (stdio and
streamable HTTP): listed, called, cut off when they hang, restarted after a crash, turned
off after too many, and checked against their schema before they run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from voxbus_cli.embedded import free_port, wait_for_port
from voxbus_common.agent import McpServer, parse_agent
from voxbus_common.providers import ToolCall
from voxbus_llm.mcp_tools import McpServerTools
from voxbus_llm.tools import ToolBox

SERVER = str(Path(__file__).resolve().parents[1] / "mcp_test_server.py")


def spec(starts: Path | None = None, **kw: object) -> McpServer:
    env = {"MCP_TEST_STARTS": str(starts)} if starts else {}
    return McpServer(name="test", command=["{python}", SERVER], env=env, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[McpServerTools]:
    tools = McpServerTools(spec(tmp_path / "starts", timeout_s=2), None)
    await tools.start()
    yield tools
    await tools.close()


async def test_lists_and_calls_tools(server: McpServerTools) -> None:
    assert {t.name for t in server.tools} == {"add", "slow", "crash", "fail"}
    add = next(t for t in server.tools if t.name == "add")
    assert add.definition()["function"]["parameters"]["required"] == ["a", "b"]
    assert await add({"a": 2, "b": 3}) == ("5", "ok")
    text, status = await server.call("fail", {})
    assert status == "tool_error" and text.startswith("error:")


async def test_a_hanging_tool_is_cut_off_and_the_server_stays(server: McpServerTools) -> None:
    with pytest.raises(TimeoutError):
        await server.call("slow", {"seconds": 30})
    assert await server.call("add", {"a": 1, "b": 1}) == ("2", "ok")


async def test_a_crashed_server_is_reported_and_started_again(server: McpServerTools,
                                                              tmp_path: Path) -> None:
    assert await server.call("crash", {}) == ("error: crash is unavailable right now",
                                              "unavailable")
    assert server.failures == 1 and not server.disabled
    assert await server.wait_connected(60)
    assert await server.call("add", {"a": 2, "b": 5}) == ("7", "ok")
    assert server.failures == 0
    assert len((tmp_path / "starts").read_text().split()) == 2  # a new process


async def test_a_server_that_keeps_crashing_is_turned_off(tmp_path: Path) -> None:
    tools = McpServerTools(spec(max_restarts=0), None)
    await tools.start()
    try:
        await tools.call("crash", {})
        assert tools.disabled
        assert await tools.call("add", {"a": 1, "b": 2}) == (
            "error: add is unavailable right now", "unavailable")
    finally:
        await tools.close()


async def test_a_server_that_cannot_start_is_reported_not_fatal() -> None:
    tools = McpServerTools(McpServer(name="gone", command=["/nonexistent/mcp-server"],
                                     max_restarts=0), None)
    await tools.start()
    try:
        assert tools.disabled and tools.tools == []
    finally:
        await tools.close()


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "--http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, 60.0, "MCP server")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_streamable_http_server(http_server: str) -> None:
    tools = McpServerTools(McpServer(name="web", url=http_server, tools=["add"]), None)
    await tools.start()
    try:
        assert [t.name for t in tools.tools] == ["add"]
        assert await tools.call("add", {"a": 20, "b": 22}) == ("42", "ok")
    finally:
        await tools.close()


async def test_toolbox_offers_mcp_tools_with_the_same_rules(tmp_path: Path) -> None:
    agent = parse_agent(f"""
name: t
instructions: be brief
tools:
  mcp:
    - name: test
      command: ["{{python}}", "{SERVER}"]
      timeout_s: 1
      read_only: [add]
""", str(tmp_path / "agent.yaml"))
    box = ToolBox(agent)
    await box.start()
    try:
        assert {"add", "slow", "crash", "fail"} <= box.names
        assert not box.has_side_effects("add") and box.has_side_effects("slow")
        assert (await box.run(ToolCall("c", "add", '{"a": 1, "b": 2}'))).result == "3"
        bad = await box.run(ToolCall("c", "add", '{"a": "one", "b": 2}'))
        assert bad.result == "error: argument 'a' must be of type integer, not \"one\""
        hung = await box.run(ToolCall("c", "slow", '{"seconds": 30}'))
        assert hung.result == "error: slow did not answer within 1 s"
    finally:
        await box.close()
