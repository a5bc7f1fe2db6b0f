"""kill -9 of a stateless worker in the middle of a turn, with another replica running: the
turn's work item (LLM turn, TTS clause) moves to the other replica (it is no longer claimed)
and the caller still hears the whole answer; memory keeps recording with its remaining
replica. Real services and nats-server; instant STT and slow scripted chat and voice models,
so the kill lands mid-turn."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    add_replica,
    log_with,
    running_instant_stack,
    wait_for_replicas,
    wait_for_session,
)
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_testkit.instant import HEARD, REPLY
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "speech"


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("failover")
    with running_instant_stack(workdir, VOXBUS_LLM_PROVIDER="voxbus_testkit.instant:slow_llm",
                               VOXBUS_TTS_PROVIDER="voxbus_testkit.instant:slow_tts") as stack:
        yield stack


async def second_replica(stack: Stack, service: str
                         ) -> tuple[dict[str, subprocess.Popen[bytes]], dict[str, Path]]:
    """Start replica "b" of `service` beside the stack's ("main"): (processes, logs) by name."""
    assert stack.log_dir is not None
    other, other_log = add_replica(stack, service, "b")
    await wait_for_replicas(stack, service, 2)
    return ({"main": stack.service_procs[service], "b": other},
            {"main": stack.log_dir / f"{service}.log", "b": other_log})


async def test_killing_the_llm_worker_mid_turn_loses_nothing(slow_stack: Stack) -> None:
    procs, logs = await second_replica(slow_stack, "llm")
    async with LiveCall(slow_stack.gateway_url) as call:
        call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))
        first = await call.wait_for(lambda e: e["type"] == "agent_text")  # the turn is going
        owner = log_with(f"call_id={call.call_id} turn={first['turn']} turn started", logs)
        procs[owner].send_signal(signal.SIGKILL)
        turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        assert turn["user_text"] == HEARD
        assert not turn["interrupted"] and turn["agent_text"] == REPLY.strip()
        survivor = "b" if owner == "main" else "main"
        retried = logs[survivor].read_text(errors="replace")
        assert f"call_id={call.call_id} turn={turn['turn']} turn started redelivered=True" in (
            retried)
    if owner == "main":
        slow_stack.service_procs["llm"] = procs["b"]


async def test_killing_the_tts_worker_mid_clause_loses_nothing(slow_stack: Stack) -> None:
    procs, logs = await second_replica(slow_stack, "tts")
    async with LiveCall(slow_stack.gateway_url) as call:
        call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))
        owner = log_with("slow synthesis started", logs)  # a clause is being synthesized
        procs[owner].send_signal(signal.SIGKILL)
        turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        assert turn["user_text"] == HEARD
        # every clause played, the killed replica's one too: the caller heard it all
        assert not turn["interrupted"] and turn["agent_text"] == REPLY.strip()
    if owner == "main":
        slow_stack.service_procs["tts"] = procs["b"]


async def test_killing_a_memory_replica_keeps_the_record(slow_stack: Stack) -> None:
    assert slow_stack.log_dir is not None
    add_replica(slow_stack, "memory", "b")
    await wait_for_replicas(slow_stack, "memory", 2)
    async with LiveCall(slow_stack.gateway_url) as call:
        slow_stack.service_procs["memory"].send_signal(signal.SIGKILL)
        call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))
        await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        call_id = call.call_id
    session = await wait_for_session(slow_stack, call_id, lambda s: bool(s.ended_unix_ns))
    assert [t.role for t in session.turns] == ["user", "assistant"]
    assert session.turns[0].text == HEARD and session.turns[1].text == REPLY.strip()
