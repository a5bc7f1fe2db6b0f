"""Tool calls for small local models: every reply is one JSON action, forced by a grammar.

A 0.5-1.5B model asked to use its chat template's native tool format rarely calls a tool and
invents facts instead; made to choose, token by token, between `{"say": "..."}` and
`{"tool": "<name>", "arguments": {...}}` (a GBNF grammar llama.cpp enforces while decoding),
with the tools, rules and examples in the system prompt, it picked the right action in 7-9
turns of 10 (docs/providers.md); plain words instead of the say object let it answer
from its chat habits and skip the tool (measured). The "say" text is streamed as it is
decoded; a tool action is parsed when the reply ends.

Speech starts three decoded tokens after the reply does (`say`, `":"`, the first word): the
JSON is compact (`":"` is one token, `": "` two) and the opening `{"` is written into the
reply as a prefix the server evaluates with the prompt rather than decodes.
"""

from __future__ import annotations

import json
from typing import Any

from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm.text_tool_calls import MALFORMED

OPEN = '{"'  # the reply's first token, written as an assistant prefix: evaluated, not decoded
SAY_PREFIX = '{"say":"'
SAY_PREFIXES = (SAY_PREFIX, '{"say": "')  # (the spaced form: a server that ignored the grammar)
TOOL_PREFIX = '{"tool":"'
COMPACT = (",", ":")  # json.dumps separators: the format the grammar forces
RESULT_PREFIX = "TOOL_RESULT"

_STRING = r'"\"" ( [^"\\\n] | "\\" ["\\/nt] ){1,300} "\""'
_COMMON = f"""str ::= {_STRING}
int ::= "-"? [0-9] [0-9]{{0,5}}
num ::= "-"? [0-9] [0-9]{{0,8}} ("." [0-9]{{1,4}})?
bool ::= "true" | "false"
"""


def _gbnf_literal(text: str) -> str:
    return json.dumps(text)  # a GBNF literal is a double-quoted string with JSON's escapes


def _value_rule(schema: dict[str, Any]) -> str:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return " | ".join(_gbnf_literal(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type")
    return {"integer": "int", "number": "num", "boolean": "bool"}.get(str(kind), "str")


def _tool_rule(name: str, parameters: dict[str, Any]) -> str:
    """The one shape of a call to this tool: its required arguments, in declared order."""
    props: dict[str, Any] = parameters.get("properties") or {}
    required = [k for k in props if k in (parameters.get("required") or [])]
    parts = [_gbnf_literal(f'{TOOL_PREFIX.removeprefix(OPEN)}{name}","arguments":{{')]
    for i, key in enumerate(required):
        sep = "," if i else ""
        parts.append(_gbnf_literal(f'{sep}"{key}":'))
        parts.append(f"( {_value_rule(props[key])} )")
    parts.append(_gbnf_literal("}}"))
    return " ".join(parts)


def _functions(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [t["function"] for t in tools or () if t.get("type") == "function"]


def action_grammar(tools: list[dict[str, Any]] | None) -> str:
    """GBNF for one reply after its `{"` prefix: a say, or (when tools are offered) a call to
    one of them."""
    rules = [f"say ::= {_gbnf_literal(SAY_PREFIX.removeprefix(OPEN)[:-1])} str \"}}\""]
    names = ["say"]
    for i, fn in enumerate(_functions(tools)):
        rules.append(f"tool{i} ::= {_tool_rule(fn['name'], fn.get('parameters') or {})}")
        names.append(f"tool{i}")
    return "\n".join([f"root ::= {' | '.join(names)}", *rules, _COMMON])


def tool_prompt(tools: list[dict[str, Any]] | None) -> str:
    """The system prompt's part that teaches the format: tools, rules, examples. Stable for
    the life of the process, so it stays in every call's cached prompt prefix."""
    fns = _functions(tools)
    lines = ["", "Reply with exactly one JSON object: {\"say\":\"...\"} to speak to the caller"]
    if not fns:
        return "\n".join([*lines[:1], lines[1] + "."])
    lines[1] += ", or {\"tool\":\"NAME\",\"arguments\":{...}} to use a tool. Tools:"
    for fn in fns:
        props = (fn.get("parameters") or {}).get("properties") or {}
        args = ", ".join(f"{k}: {v.get('type', 'string')}"
                         + (f" ({v['description']})" if v.get("description") else "")
                         for k, v in props.items())
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '')}".rstrip())
    names = {fn["name"] for fn in fns}
    lines.append(f"Results of tools come back as messages starting with {RESULT_PREFIX}: "
                 "answer the caller's question from them, in plain words.")
    rules = ["greetings, thanks and small talk get a short say",
             "never make up facts such as hours, prices, dishes, addresses, phone numbers "
             "or names"]
    if "lookup" in names:
        rules.append("any question about facts you were not given gets lookup")
    if "end_call" in names:
        rules.append("when the caller says goodbye, use end_call")
    lines.append("Rules: " + "; ".join(rules) + ".")
    lines.append("Examples:")
    lines.append('caller: hi there -> {"say":"Hello! How can I help?"}')
    if "lookup" in names:
        lines.append('caller: are you open on sunday? -> '
                     '{"tool":"lookup","arguments":{"query":"opening hours sunday"}}')
    if "end_call" in names:
        lines.append('caller: ok thanks, bye -> {"tool":"end_call","arguments":{}}')
    return "\n".join(lines)


def wire_messages(messages: list[ChatTurn]) -> list[dict[str, Any]]:
    """The conversation as the model saw its own replies: spoken turns as {"say"} actions,
    tool calls as {"tool"} actions, tool results as TOOL_RESULT lines from the user side
    (chat templates of small models do not all know a tool role)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            name = names.get(m.tool_call_id, "tool")
            out.append({"role": "user", "content": f"{RESULT_PREFIX} {name}: {m.content}"})
        elif m.role == "assistant" and m.tool_calls:
            call = m.tool_calls[0]  # (one action per reply in this format)
            names.update({c.id: c.name for c in m.tool_calls})
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                arguments = {}
            out.append({"role": "assistant", "content": json.dumps(
                {"tool": call.name, "arguments": arguments}, separators=COMPACT)})
        elif m.role == "assistant":
            out.append({"role": "assistant",
                        "content": json.dumps({"say": m.content}, separators=COMPACT)})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


class ActionStream:
    """Feed the reply's deltas; `push` returns the say text decodable so far. A reply that is
    not a JSON action at all (a server that ignored the grammar) is streamed as plain text.
    `prefix`: what the request wrote into the reply before the model went on (OPEN); a
    server may stream it back first (llama.cpp's does), or not."""

    def __init__(self, prefix: str = "") -> None:
        self._raw: list[str] = [prefix] if prefix else []
        self._prefix = prefix
        self._lead = ""  # the first deltas, until it is clear whether they echo the prefix
        self._mode = ""  # "", "say", "tool", "text", "done"
        self._escape = ""  # a backslash sequence split across deltas

    def push(self, delta: str) -> str:
        if self._prefix:
            self._lead += delta
            if len(self._lead) < len(self._prefix) and self._prefix.startswith(self._lead):
                return ""
            delta = self._lead.removeprefix(self._prefix)
            self._prefix = ""
        self._raw.append(delta)
        if self._mode == "":
            head = "".join(self._raw).lstrip()
            say = next((p for p in SAY_PREFIXES if head.startswith(p)), "")
            if say:
                self._mode = "say"
                return self._say(head[len(say):])
            if head.startswith('{"tool"'):
                self._mode = "tool"
            elif head and not any(p.startswith(head) for p in (*SAY_PREFIXES, '{"tool"')):
                self._mode = "text"
                return head
            return ""
        if self._mode == "say":
            return self._say(delta)
        return delta if self._mode == "text" else ""

    def _say(self, chunk: str) -> str:
        out: list[str] = []
        text = self._escape + chunk
        self._escape = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text):
                    self._escape = ch
                    break
                nxt = text[i + 1]
                out.append({"n": " ", "t": " "}.get(nxt, nxt))
                i += 2
                continue
            if ch == '"':
                self._mode = "done"
                break
            out.append(ch)
            i += 1
        return "".join(out)

    def finish(self) -> list[ToolCall]:
        """The tool call, if the reply was one; a malformed one comes back as MALFORMED."""
        if self._mode != "tool":
            return []
        body = "".join(self._raw).strip()
        try:
            doc = json.loads(body)
            name, arguments = doc["tool"], doc.get("arguments", {})
            if not isinstance(name, str) or not isinstance(arguments, dict):
                raise ValueError("bad shape")
        except (ValueError, KeyError, TypeError):
            return [ToolCall("call_json_0", MALFORMED, body[:200])]
        return [ToolCall("call_json_0", name, json.dumps(arguments))]
