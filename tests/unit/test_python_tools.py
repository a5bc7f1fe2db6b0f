"""Python function tools: the function's name, docstring and type hints are the tool the
model sees; sync functions run in a thread; errors and hangs become results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest

from voxbus_common.agent import PythonTool, parse_agent
from voxbus_common.providers import ToolCall
from voxbus_llm.python_tools import ToolImportError, describe, import_function
from voxbus_llm.tools import ToolBox

MODULE = '''
import asyncio
import time
from typing import Annotated, Literal


def specials(course: Literal["starter", "main", "dessert"],
             vegetarian: bool = False) -> list[str]:
    """Today's specials for one course.

    Longer notes the model does not need."""
    dishes = {"main": ["osso buco", "mushroom risotto"]}[course]
    return [d for d in dishes if not vegetarian or "risotto" in d]


async def wait(seconds: Annotated[float, "how long"]) -> str:
    """Wait a while (async)."""
    await asyncio.sleep(seconds)
    return "done"


def sleepy(seconds: float) -> str:
    """Wait a while (sync, in a thread)."""
    time.sleep(seconds)
    return "done"


def broken() -> str:
    """Always fails."""
    raise RuntimeError("database is down")
'''


def test_schema_from_type_hints() -> None:
    def f(name: str, size: int, mood: Literal["a", "b"] | None = None,
          tags: list[str] | None = None, note: Annotated[str, "a note"] = "") -> str:
        """Say hello."""
        return name

    d = describe(f, "f")["function"]
    assert d["description"] == "Say hello."
    assert d["parameters"] == {"type": "object", "required": ["name", "size"], "properties": {
        "name": {"type": "string"}, "size": {"type": "integer"},
        "mood": {"enum": ["a", "b"]}, "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": "string", "description": "a note"}}}


def test_a_missing_function_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "menu_tools.py").write_text(MODULE)
    with pytest.raises(ToolImportError, match="has no function nope"):
        import_function("menu_tools:nope", tmp_path)
    with pytest.raises(ToolImportError, match="cannot import no_such_module"):
        import_function("no_such_module:f", tmp_path)
    assert PythonTool(function="menu_tools:specials").timeout_s == 5.0


async def test_python_tools_run_with_the_same_rules(tmp_path: Path) -> None:
    (tmp_path / "kitchen_tools.py").write_text(MODULE)
    agent = parse_agent("""
name: t
instructions: be brief
tools:
  python:
    - function: kitchen_tools:specials
      read_only: true
    - {function: "kitchen_tools:wait", timeout_s: 0.5}
    - {function: "kitchen_tools:sleepy", timeout_s: 0.5, name: nap}
    - {function: "kitchen_tools:broken"}
""", str(tmp_path / "agent.yaml"))
    box = ToolBox(agent)
    await box.start()
    try:
        assert {"specials", "wait", "nap", "broken"} <= box.names
        assert not box.has_side_effects("specials") and box.has_side_effects("wait")
        ok = await box.run(ToolCall("c", "specials", '{"course": "main", "vegetarian": true}'))
        assert ok.result == '["mushroom risotto"]'
        bad = await box.run(ToolCall("c", "specials", '{"course": "soup"}'))
        assert bad.result == "error: argument 'course' must be one of: starter, main, dessert"
        assert (await box.run(ToolCall("c", "wait", '{"seconds": 30}'))).result == \
            "error: wait did not answer within 0.5 s"
        assert (await box.run(ToolCall("c", "nap", '{"seconds": 2}'))).result == \
            "error: nap did not answer within 0.5 s"
        assert (await box.run(ToolCall("c", "broken", "{}"))).result == "error: broken failed"
    finally:
        await box.close()
