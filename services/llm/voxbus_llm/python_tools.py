"""Python function tools, as Pipecat and LiveKit users write them: a plain (sync or async)
function whose name, docstring and type hints become the tool the model sees. It is named in
the agent file by import path ("module:function"); the agent's folder is searched first.
A sync function runs in a thread, so a slow one cannot stall other calls."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxbus_common.agent import PythonTool
from voxbus_llm.tool_args import MAX_RESULT_CHARS

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


class ToolImportError(ValueError):
    """The function cannot be imported or described; the message says which and why."""


def json_schema(annotation: Any) -> dict[str, Any]:
    """JSON schema for a parameter's type hint (str, int, float, bool, Literal, list[X],
    X | None, Annotated[X, "description"])."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        schema = json_schema(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        return {**schema, "description": notes[0]} if notes else schema
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return json_schema(rest[0])
        return {"anyOf": [json_schema(a) for a in rest]}
    if annotation in (dict, inspect.Parameter.empty, Any) or origin is dict:
        return {"type": "object"} if annotation is dict or origin is dict else {}
    raise ToolImportError(f"parameter type {annotation!r} has no JSON schema")


def describe(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    """The OpenAI function definition of `fn`."""
    hints = typing.get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        properties[param.name] = json_schema(hints.get(param.name, param.annotation))
        if param.default is param.empty:
            required.append(param.name)
    doc = inspect.getdoc(fn) or name.replace("_", " ")
    return {"type": "function", "function": {
        "name": name, "description": doc.split("\n\n")[0].strip(),
        "parameters": {"type": "object", "properties": properties, "required": required}}}


def import_function(path: str, folder: Path | None) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ToolImportError(f"tool {path}: cannot import {module_name}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ToolImportError(f"tool {path}: {module_name} has no function {attr}")
    return fn  # type: ignore[no-any-return]


class PythonFunctionTool:
    def __init__(self, spec: PythonTool, folder: Path | None) -> None:
        self.fn = import_function(spec.function, folder)
        self.name = spec.name or spec.function.rsplit(":", 1)[1]
        self.read_only = spec.read_only
        self.timeout_s = spec.timeout_s
        self._definition = describe(self.fn, self.name)
        if spec.description:
            self._definition["function"]["description"] = spec.description

    def definition(self) -> dict[str, Any]:
        return self._definition

    async def __call__(self, args: dict[str, Any]) -> tuple[str, str]:
        if inspect.iscoroutinefunction(self.fn):
            value = await self.fn(**args)
        else:
            value = await asyncio.to_thread(self.fn, **args)
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return (text[:MAX_RESULT_CHARS] or "(empty result)"), "ok"
