"""Tools end to end: real NATS, the real services (Whisper STT, the LLM worker with its OpenAI
adapter, memory, gateway) and an agent file; the language model is the scripted
OpenAI-compatible server (voxbus_testkit.scripted_llm), because the embedded 135M model cannot call
functions. A multi-turn call: a slow webhook (filler first, then its result is spoken), a
knowledge lookup, then end_call; and a transfer_call that hands the caller over."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import SPEECH, words
from voxbus_cli.caller import CallResult, load_wav, place_call
from voxbus_cli.embedded import free_port, stop_all
from voxbus_cli.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
RULES = [
    {"when": "ring", "tool": "stock", "arguments": {"item": "gold ring"}},
    {"when": "journey", "tool": "lookup", "arguments": {"query": "how long is the journey home"}},
    {"when": "halt", "tool": "end_call", "say": "Goodbye then.", "arguments": {"reason": "done"}},
    {"when": "quickly", "tool": "transfer_call", "arguments": {"destination": "front desk"}},
]
AGENT = """
name: Tool test line
instructions: Use the tools.
knowledge: kb
tools:
  end_call: true
  lookup: true
  transfer_call: {{targets: {{front desk: "+15550100100"}}}}
  webhooks:
    - name: stock
      description: Is an item in stock?
      url: {base}/hooks/stock
      timeout_s: 20
      parameters: {{type: object, properties: {{item: {{type: string}}}}, required: [item]}}
  filler: {{after_ms: 700, text: "One moment please."}}
"""
KNOWLEDGE = "# Journeys\n\nThe shuttle home takes forty minutes and leaves every hour.\n"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scripted model server; its webhook answers after 2.5 s (a slow business API)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxbus_testkit.scripted_llm", "--port", "0",
         "--rules", json.dumps(RULES),
         "--hook-delay", "2.5"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until it listens (or exits: empty line)
    assert line.startswith("listening on"), line
    try:
        yield f"http://127.0.0.1:{line.split()[-1]}"
    finally:
        stop_all([proc])  # type: ignore[list-item]


@pytest.fixture(scope="module")
def tool_stack(scripted: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("tools")
    (workdir / "kb").mkdir()
    (workdir / "kb" / "journeys.md").write_text(KNOWLEDGE)
    agent = workdir / "agent.yaml"
    agent.write_text(AGENT.format(base=scripted))
    env = {"PYTHONPATH": str(ROOT), "VOXBUS_AGENT_FILE": str(agent),
           "VOXBUS_LLM_BASE_URL": f"{scripted}/v1", "VOXBUS_LLM_MODEL": "scripted",
           "VOXBUS_TTS_PROVIDER": "voxbus_testkit.instant:tts", "VOXBUS_AUDIOSOCKET_PORT": "0"}
    with Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
               env=env).running(timeout_s=240) as s:
        yield s


def with_pauses(*clips: str, pause_s: float = 7.0) -> bytes:
    """Clips spoken one after another, each followed by a pause long enough for the reply."""
    silence = np.zeros(int(16000 * pause_s), dtype="<i2").tobytes()
    return b"".join(load_wav(SPEECH / clip) + silence for clip in clips)


def turn_about(result: CallResult, word: str) -> dict[str, Any]:
    turn = next((t for t in result.turns if word in words(t["user_text"])), None)
    assert turn is not None, f"no turn about {word!r}: {result.turns}"
    return turn


def seen(scripted: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{scripted}/requests", timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


async def test_tool_results_are_spoken_then_the_agent_ends_the_call(
        tool_stack: Stack, scripted: str) -> None:
    audio = with_pauses("osr_us0034_8k_s01.wav", "osr_us0034_8k_s02.wav",
                        "ls_test_4507-16021-0012.wav")
    result = await place_call(tool_stack.gateway_url, audio, timeout_s=120)
    assert not result.errors, result.errors

    ring = turn_about(result, "ring")  # a webhook slower than the filler delay
    assert ring["agent_text"].startswith("One moment please.")
    assert 'stock says yes for {"item": "gold ring"}' in ring["agent_text"]
    assert not ring["interrupted"]
    tools = [e["tools"] for e in result.events if e.get("type") == "tools"]
    assert ["stock"] in tools and ["lookup"] in tools and ["end_call"] in tools
    hooks = seen(scripted)["hooks"]
    assert [h["arguments"] for h in hooks] == [{"item": "gold ring"}]  # called once, after final

    journey = turn_about(result, "journey")  # retrieval only because the model asked
    assert "shuttle home takes forty minutes" in journey["agent_text"]

    halt = turn_about(result, "halt")
    assert "Goodbye then." in halt["agent_text"]
    assert result.turns[-1]["turn"] == halt["turn"]
    assert result.ended_reason == "the agent ended the call"
    assert len(result.reply_pcm) > 16000 * 2  # the replies were spoken (> 1 s of audio)


async def test_transfer_call_hands_the_caller_over(tool_stack: Stack) -> None:
    result = await place_call(tool_stack.gateway_url, with_pauses("osr_us0034_8k_s10.wav"),
                              timeout_s=120)
    transfers = [e for e in result.events if e.get("type") == "transfer"]
    assert transfers == [{"type": "transfer", "target": "+15550100100"}]
    assert result.ended_reason == "transferred to +15550100100"
    assert "front desk" in turn_about(result, "quickly")["agent_text"]
