"""Tool calls a local server leaves in the text: held back, never spoken, parsed at the end;
ordinary replies stream unchanged; garbage becomes a clear error for the model."""

from __future__ import annotations

from voxbus_common.providers import ToolCall
from voxbus_llm.text_tool_calls import MALFORMED, TextToolCalls, parse_calls


def feed(pieces: list[str]) -> tuple[str, str, list[ToolCall]]:
    held = TextToolCalls()
    spoken = "".join(held.push(p) for p in pieces)
    rest, calls = held.finish()
    return spoken, rest, calls


def test_plain_reply_streams_as_is() -> None:
    spoken, rest, calls = feed(["Hello", "!", " How can", " I help?"])
    assert spoken + rest == "Hello! How can I help?" and calls == []
    assert feed(["<", "b>ok"]) == ("<b>ok", "", [])  # not an opener after all: spoken


def test_json_call_in_pieces_is_held_and_parsed() -> None:
    pieces = ["{\n", " ", ' "', "name", '":', ' "lookup", "arguments": {"query": "nuts"}}']
    spoken, rest, calls = feed(pieces)
    assert spoken == rest == ""
    assert calls == [ToolCall("call_text_0", "lookup", '{"query": "nuts"}')]


def test_qwen_tags_and_several_calls() -> None:
    text = ('<tool_call>\n{"name": "end_call", "arguments": {}}\n</tool_call>\n'
            '<tool_call>\n{"name": "lookup", "arguments": "{\\"query\\": \\"x\\"}"}\n</tool_call>')
    assert [c.name for c in parse_calls(text)] == ["end_call", "lookup"]
    assert parse_calls(text)[1].arguments == '{"query": "x"}'


def test_garbage_is_malformed_not_spoken() -> None:
    spoken, rest, calls = feed(['{"name": "book_table", "arguments": {"party', "_size"])
    assert spoken == rest == "" and calls[0].name == MALFORMED
    assert parse_calls('{"arguments": {}}')[0].name == MALFORMED
    assert parse_calls("{" + "x" * 5000)[0].name == MALFORMED
