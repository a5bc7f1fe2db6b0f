"""Hybrid routing against the real services: a rule answers without the LLM, and an
end_call rule says goodbye and hangs up; a bad routes file stops the gateway with a located
error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SPEECH, extra_gateway, words
from voxbus_cli.caller import CallResult, load_wav, place_call
from voxbus_cli.stack import Stack

ROUTES = """
routes:
  - name: hours
    keywords: ["experience"]
    say: "We are open from noon to ten, every day."
  - name: bye
    regex: "halt"
    say: "Goodbye, thanks for calling."
    action: end_call
"""


@pytest.fixture(scope="module")
def routed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("routes") / "routes.yaml"
    path.write_text(ROUTES)
    with extra_gateway(stack, "routed", {"VOXBUS_ROUTES_FILE": str(path)}) as base:
        yield f"ws://{base}/v1/pcm"


def routed_turn(result: CallResult, route: str) -> dict[str, Any]:
    """The turn a rule answered (a pause inside the clip may give the LLM an earlier one)."""
    hits = [e for e in result.events if e.get("type") == "routed"]
    assert [e["route"] for e in hits] == [route], result.events
    turn = next(t for t in result.turns if t["turn"] == hits[0]["turn"])
    tokens = [e for e in result.events if e.get("type") == "agent_text"
              and e.get("turn") == turn["turn"]]
    assert not tokens  # no LLM token streamed for the routed turn
    return turn


async def test_rule_answers_without_the_llm(routed: str) -> None:
    result = await place_call(routed, load_wav(SPEECH / "ls_test_2830-3980-0043.wav"))
    assert words(result.caller_text) == "experience proves this"
    turn = routed_turn(result, "hours")
    assert turn["agent_text"] == "We are open from noon to ten, every day."
    assert turn["latency_ms"]["voice_to_voice"] is not None
    assert len(result.reply_pcm) > 16000  # the fixed text was spoken (over 0.5 s of audio)


async def test_end_call_rule_says_goodbye_and_hangs_up(routed: str) -> None:
    result = await place_call(routed, load_wav(SPEECH / "ls_test_4507-16021-0012.wav"),
                              timeout_s=60)
    turn = routed_turn(result, "bye")
    assert turn["agent_text"] == "Goodbye, thanks for calling."
    assert result.turns[-1]["turn"] == turn["turn"]  # nothing after the goodbye
    assert result.ended_reason == "route bye"


def test_bad_routes_file_stops_the_gateway(stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text("routes:\n  - {name: x, say: y, regex: '('}\n")
    env = stack.service_env()
    env.update({"VOXBUS_ROUTES_FILE": str(bad), "VOXBUS_GATEWAY_PORT": "0",
                "VOXBUS_AUDIOSOCKET_PORT": "0", "VOXBUS_METRICS_PORT": "0"})
    proc = subprocess.run([sys.executable, "-m", "voxbus_gateway"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "routes[0] (x): bad regex" in proc.stderr
