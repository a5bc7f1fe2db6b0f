"""One call across the five services yields one connected trace: call -> turn -> chat ->
(tts, memory.context), and call -> stt.final. Spans are read from the JSON-lines files every
process writes under VOXBUS_TRACE_DIR (the OTLP exporter takes the same spans in production)."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import SPEECH
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.stack import Stack


def read_spans(stack: Stack) -> list[dict[str, Any]]:
    spans = []
    for path in (stack.workdir / "traces").glob("*.jsonl"):
        spans += [json.loads(line) for line in path.read_text().splitlines() if line]
    return spans


async def test_one_call_is_one_connected_trace_across_all_services(stack: Stack) -> None:
    call_id = "trace-call-1"
    result = await place_call(stack.gateway_url, load_wav(SPEECH / "osr_us0034_8k_s06.wav"),
                              call_id=call_id, timeout_s=120)
    assert result.turns and result.ended_reason
    spans = read_spans(stack)
    call = next(s for s in spans
                if s["name"] == "call" and s["attributes"].get("voxbus.call_id") == call_id)
    trace = [s for s in spans if s["trace_id"] == call["trace_id"]]
    services = {s["service"] for s in trace}
    assert services == {f"voxbus-{n}" for n in ("gateway", "stt", "llm", "tts", "memory")}, (
        services)
    by_id = {s["span_id"]: s for s in trace}

    def parent(span: dict[str, Any]) -> str:
        if span["parent_id"] not in by_id:
            return "?"
        return str(by_id[span["parent_id"]]["name"]).split(" ")[0]  # "chat <model>" -> chat

    assert call["parent_id"] == ""
    kinds = {s["name"].split(" ")[0] for s in trace}
    assert {"call", "turn", "chat", "tts", "memory.context", "stt.final"} <= kinds
    for span in trace:
        name = span["name"].split(" ")[0]
        expected = {"turn": "call", "chat": "turn", "tts": "chat", "memory.context": "chat",
                    "stt.final": "call"}.get(name)
        if expected:
            assert parent(span) == expected, (span["name"], parent(span))
    chat = next(s for s in trace if s["name"].startswith("chat "))
    assert chat["attributes"]["gen_ai.operation.name"] == "chat"
    assert chat["attributes"]["gen_ai.request.model"]
    turn = next(s for s in trace if s["name"] == "turn" and not s["attributes"].get(
        "voxbus.preemptive_dropped"))
    assert turn["attributes"]["voxbus.voice_to_voice_ms"] > 0
