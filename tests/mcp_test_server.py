"""A small real MCP server for the tool tests (stdio by default, or streamable HTTP):
`python tests/mcp_test_server.py [--http PORT]`. Each start appends a line to the file in
MCP_TEST_STARTS (if set), so a test can see a crashed server being started again."""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

server: MCPServer = MCPServer("voxbus-test", log_level="CRITICAL")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    return str(a + b)


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after a while."""
    await asyncio.sleep(seconds)
    return "finally"


@server.tool()
def crash() -> str:
    """Exit the server process at once, as a crash would."""
    os._exit(3)


@server.tool()
def fail() -> str:
    """Raise an error inside the tool."""
    raise RuntimeError("the kitchen printer is out of paper")


if __name__ == "__main__":
    if os.environ.get("MCP_TEST_STARTS"):
        with open(os.environ["MCP_TEST_STARTS"], "a") as f:
            f.write(f"{os.getpid()}\n")
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
