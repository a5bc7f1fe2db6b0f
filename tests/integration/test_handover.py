"""An STT replica that owns a call goes away in the middle of the caller's sentence, either
stopped (SIGTERM, a rolling update: it hands the call over) or killed (SIGKILL: the gateway
notices its heartbeat stop and hands the call to a survivor from its last checkpoint). Either way
another replica replays the audio from JetStream from the start of that utterance, so the
sentence is transcribed once, whole, and answered. Real services and nats-server; instant
test models (the platform, not the model, is under test)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import add_replica, running_instant_stack
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack, ping_services
from voxbus_testkit.instant import HEARD
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "speech"


Replicas = dict[str, tuple[subprocess.Popen[bytes], Path]]


@pytest.fixture(scope="module")
def instant_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_instant_stack(tmp_path_factory.mktemp("handover")) as stack:
        yield stack


@pytest.fixture(scope="module")
def replicas(instant_stack: Stack) -> Replicas:
    """The STT replicas started so far (the stack stops them all at the end)."""
    assert instant_stack.log_dir is not None
    return {"main": (instant_stack.service_procs["stt"], instant_stack.log_dir / "stt.log")}


def logged_by(line: str, logs: dict[str, Path], timeout_s: float = 60.0) -> str:
    """Which process logged `line` (a bounded wait for another process's log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, path in logs.items():
            if line in path.read_text(errors="replace"):
                return name
        time.sleep(0.05)
    raise AssertionError(f"nobody logged {line!r}")


def owner_of(call_id: str, logs: dict[str, Path]) -> str:
    return logged_by(f"call_id={call_id} turn=0 session started", logs)


async def lose_the_owner_mid_sentence(stack: Stack, replicas: Replicas,
                                      how: signal.Signals) -> tuple[str, str]:
    """(what the replica that carried on logged, the call id)."""
    name = f"r{len(replicas)}"
    replicas[name] = add_replica(stack, "stt", name)
    alive = {k: v for k, v in replicas.items() if v[0].poll() is None}
    assert len(alive) >= 2
    deadline = time.monotonic() + 60
    while (await ping_services(stack.nats_url)).get("stt", 0) < len(alive):
        assert time.monotonic() < deadline, "an STT replica did not come up"
    async with LiveCall(stack.gateway_url) as call:
        owner = owner_of(call.call_id, {k: v[1] for k, v in alive.items()})
        call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))
        await call.wait_for(lambda e: e["type"] == "vad" and e["event"] == "speech_start")
        alive[owner][0].send_signal(how)
        turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        assert turn["user_text"] == HEARD and turn["agent_text"]
        finals = [e for e in call.events if e["type"] == "transcript" and e["final"]]
        assert len(finals) == 1, finals  # the sentence once: not lost, not repeated
        ends = [e for e in call.events if e["type"] == "vad" and e["event"] == "speech_end"]
        # audio time: the utterance ran to the end of the sentence (not cut at the signal)
        assert ends[-1]["audio_offset_ms"] >= 2500, ends
    alive[owner][0].wait(timeout=60)
    taken = "".join(path.read_text(errors="replace") for name, (_, path) in alive.items()
                    if name != owner)
    return taken, call.call_id


async def test_a_stopping_stt_hands_its_call_over_mid_sentence(instant_stack: Stack,
                                                               replicas: Replicas) -> None:
    taken, call_id = await lose_the_owner_mid_sentence(instant_stack, replicas, signal.SIGTERM)
    assert f"call_id={call_id} turn=0 call taken over" in taken


async def test_a_killed_stt_is_replaced_without_losing_a_word(instant_stack: Stack,
                                                              replicas: Replicas) -> None:
    taken, call_id = await lose_the_owner_mid_sentence(instant_stack, replicas, signal.SIGKILL)
    assert f"call_id={call_id} turn=0 call taken over" in taken
    # handed to the survivor directly (vb.stt.take.NAME), not through the work queue
    assert instant_stack.log_dir is not None
    gateway = {"gateway": instant_stack.log_dir / "gateway.log"}
    logged_by(f"call_id={call_id} turn=0 STT call handed to a survivor", gateway)
