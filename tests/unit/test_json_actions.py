"""JSON actions for small local models: the grammar per tool, the streamed say text, the
parsed tool call, and the history as the model saw its own replies."""

from __future__ import annotations

import json

from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm.json_actions import ActionStream, action_grammar, tool_prompt, wire_messages
from voxbus_llm.text_tool_calls import MALFORMED

TOOLS = [
    {"type": "function", "function": {
        "name": "check_availability", "description": "Is a table free?",
        "parameters": {"type": "object", "properties": {
            "party_size": {"type": "integer"}, "time": {"type": "string"},
            "note": {"type": "string"}},
            "required": ["party_size", "time"]}}},
    {"type": "function", "function": {
        "name": "transfer_call", "description": "To a person.",
        "parameters": {"type": "object", "properties": {
            "target": {"type": "string", "enum": ["manager", "host stand"]}},
            "required": ["target"]}}},
    {"type": "function", "function": {"name": "end_call", "description": "Hang up.",
                                      "parameters": {"type": "object", "properties": {}}}},
]


def feed(stream: ActionStream, text: str, size: int = 3) -> str:
    return "".join(stream.push(text[i:i + size]) for i in range(0, len(text), size))


def test_the_grammar_has_one_shape_per_tool_with_required_arguments_in_order() -> None:
    grammar = action_grammar(TOOLS)
    root = grammar.splitlines()[0]
    assert root == "root ::= say | tool0 | tool1 | tool2"
    tool0 = next(line for line in grammar.splitlines() if line.startswith("tool0 ::="))
    assert tool0.index("party_size") < tool0.index("time") and "note" not in tool0
    assert "( int )" in tool0 and "( str )" in tool0
    tool1 = next(line for line in grammar.splitlines() if line.startswith("tool1 ::="))
    assert '"\\"manager\\"" | "\\"host stand\\""' in tool1
    assert action_grammar(None).splitlines()[0] == "root ::= say"


def test_say_text_streams_as_it_is_decoded_with_escapes_split_across_deltas() -> None:
    reply = json.dumps({"say": 'We open at "noon"\\ today.\nSee you!'})
    stream = ActionStream()
    assert feed(stream, reply, size=2) == 'We open at "noon"\\ today. See you!'
    assert stream.finish() == []


def test_a_tool_action_is_held_and_parsed_at_the_end() -> None:
    reply = '{"tool": "check_availability", "arguments": {"party_size": 2, "time": "19:00"}}'
    stream = ActionStream()
    assert feed(stream, reply) == ""
    [call] = stream.finish()
    assert call.name == "check_availability"
    assert json.loads(call.arguments) == {"party_size": 2, "time": "19:00"}


def test_a_truncated_tool_action_is_malformed_and_plain_text_passes_through() -> None:
    stream = ActionStream()
    feed(stream, '{"tool": "end_call", "argum')
    assert [c.name for c in stream.finish()] == [MALFORMED]
    plain = ActionStream()
    assert feed(plain, "Hello there, how can I help?") == "Hello there, how can I help?"
    assert plain.finish() == []


def test_history_shows_the_model_its_own_actions_and_tool_results_as_user_lines() -> None:
    call = ToolCall("c1", "end_call", "{}")
    wire = wire_messages([
        ChatTurn("system", "S"), ChatTurn("user", "bye"),
        ChatTurn("assistant", "", tool_calls=(call,)),
        ChatTurn("tool", "ok", tool_call_id="c1"), ChatTurn("assistant", "Goodbye!")])
    assert [m["role"] for m in wire] == ["system", "user", "assistant", "user", "assistant"]
    assert json.loads(wire[2]["content"]) == {"tool": "end_call", "arguments": {}}
    assert wire[3]["content"] == "TOOL_RESULT end_call: ok"
    assert json.loads(wire[4]["content"]) == {"say": "Goodbye!"}


def test_the_tool_prompt_lists_every_tool_and_only_rules_for_tools_that_exist() -> None:
    text = tool_prompt(TOOLS)
    for name in ("check_availability(party_size: integer", "transfer_call(", "end_call("):
        assert name in text
    assert "use end_call" in text and "lookup" not in text
    assert "tool" not in tool_prompt(None).replace("{\"say\"", "")
