"""STT handover on a rolling update: the STT replica that owns a call is stopped (SIGTERM) in
the middle of the caller's sentence; another replica carries the call on from the start of
that utterance, so the sentence is transcribed once, whole, and answered. Real services and
nats-server; instant test models (the platform, not the model, is under test)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.instant import HEARD, instant_env
from tests.live_call import LiveCall
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port, spawn, stop_all
from voxbus_cli.stack import Stack, ping_services

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "speech"


@pytest.fixture(scope="module")
def two_stt(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Stack, subprocess.Popen[bytes], Path]]:
    """An instant stack with a second STT replica; yields (stack, replica B, B's log)."""
    workdir = tmp_path_factory.mktemp("handover")
    env = {**instant_env(), "PYTHONPATH": str(ROOT)}
    with Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
               env=env).running() as stack:
        b_env = stack.service_env()
        b_env["VOXBUS_METRICS_PORT"] = "0"
        b_log = workdir / "logs" / "stt-b.log"
        with b_log.open("ab") as log:
            replica = spawn([sys.executable, "-m", "voxbus_stt"], env=b_env, log=log)
            try:
                yield stack, replica, b_log
            finally:
                stop_all([replica])


def owner_of(call_id: str, logs: dict[str, Path], timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded wait for another process's log line
        for name, path in logs.items():
            if f"call_id={call_id} turn=0 session started" in path.read_text(errors="replace"):
                return name
        time.sleep(0.05)
    raise AssertionError(f"no STT replica took {call_id}")


async def test_a_stopping_stt_hands_its_call_over_mid_sentence(
        two_stt: tuple[Stack, subprocess.Popen[bytes], Path]) -> None:
    stack, replica_b, b_log = two_stt
    deadline = time.monotonic() + 60
    while (await ping_services(stack.nats_url)).get("stt", 0) < 2:  # both replicas ready
        assert time.monotonic() < deadline, "the second STT replica did not come up"
    assert stack.log_dir is not None
    logs = {"a": stack.log_dir / "stt.log", "b": b_log}
    procs = {"a": stack.service_procs["stt"], "b": replica_b}
    async with LiveCall(stack.gateway_url) as call:
        owner = owner_of(call.call_id, logs)
        other = "b" if owner == "a" else "a"
        call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))
        await call.wait_for(lambda e: e["type"] == "vad" and e["event"] == "speech_start")
        procs[owner].send_signal(signal.SIGTERM)  # a rolling update stops the owner
        turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        assert turn["user_text"] == HEARD and turn["agent_text"]
        finals = [e for e in call.events if e["type"] == "transcript" and e["final"]]
        assert len(finals) == 1, finals  # the sentence once: not lost, not repeated
        ends = [e for e in call.events if e["type"] == "vad" and e["event"] == "speech_end"]
        # audio time: the utterance ran to the end of the sentence (not cut at the SIGTERM)
        assert ends[-1]["audio_offset_ms"] >= 2500, ends
    assert procs[owner].wait(timeout=60) == 0
    assert "session handed over" in logs[owner].read_text(errors="replace")
    taken = logs[other].read_text(errors="replace")
    assert f"call_id={call.call_id} turn=0 call taken over" in taken
