"""Tool calls that arrive as text. llama-cpp-python's server (and other local servers) pass a
model's tool call through as plain content: `{"name": ..., "arguments": {...}}`, or Qwen's
`<tool_call>{...}</tool_call>`. A reply that starts like that is held back instead of spoken,
and parsed when the stream ends; any other reply streams as usual. A call that cannot be
parsed comes back as MALFORMED, so the model is told exactly what was wrong."""

from __future__ import annotations

import json
import re
from typing import Any

from voxbus_common.providers import ToolCall

MALFORMED = "_malformed_tool_call"  # ToolBox answers it with an error for the model
_OPENERS = ("{", "<tool_call>", "[{", "```json", "```")
_TAGS = re.compile(r"</?tool_call>|```(?:json)?")
MAX_HELD = 4000  # characters: a runaway "call" is malformed, not held forever


class TextToolCalls:
    """Feed content deltas; `push` returns what may be spoken now."""

    def __init__(self) -> None:
        self._held: list[str] = []
        self._deciding = True  # until the reply's first characters say what it is
        self.holding = False

    def push(self, delta: str) -> str:
        if not self._deciding:
            if self.holding:
                self._held.append(delta)
                return ""
            return delta
        self._held.append(delta)
        start = "".join(self._held).lstrip()
        if not start:
            return ""
        if any(o.startswith(start) for o in _OPENERS) and len(start) < 11:
            return ""  # could still become an opener: wait for a few more characters
        self._deciding = False
        self.holding = start.startswith(_OPENERS)
        if self.holding:
            return ""
        text, self._held = "".join(self._held), []
        return text

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(text still to speak, the tool calls found in held text)."""
        held, self._held = "".join(self._held), []
        if not self.holding:
            return held, []
        return "", parse_calls(held)


def parse_calls(text: str) -> list[ToolCall]:
    body = _TAGS.sub("\n", text).strip()
    if len(body) > MAX_HELD:
        return [ToolCall("call_text_0", MALFORMED, body[:200])]
    docs: list[Any] = []
    decoder = json.JSONDecoder()
    at = 0
    try:
        while at < len(body):
            while at < len(body) and body[at] in " \n\r\t,":
                at += 1
            if at >= len(body):
                break
            doc, at = decoder.raw_decode(body, at)
            docs.extend(doc if isinstance(doc, list) else [doc])
    except ValueError:
        return [ToolCall("call_text_0", MALFORMED, body[:200])]
    calls = []
    for n, doc in enumerate(docs):
        name = doc.get("name") if isinstance(doc, dict) else None
        args = doc.get("arguments", doc.get("parameters", {})) if isinstance(doc, dict) else None
        if not isinstance(name, str) or not name:
            return [ToolCall(f"call_text_{n}", MALFORMED, json.dumps(doc)[:200])]
        arguments = args if isinstance(args, str) else json.dumps({} if args is None else args)
        calls.append(ToolCall(f"call_text_{n}", name, arguments))
    return calls
