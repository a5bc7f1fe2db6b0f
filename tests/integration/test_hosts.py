"""The platform spread over test hosts (tests/hosts.py: network namespaces on one bridge,
each with its own address and link): a 3-node NATS cluster on the bridge's address, and the
gateway, memory, TTS, two LLM and two STT replicas each on its own host, all reaching the
cluster over their own link. The caller dials the gateway host from outside. The STT
owner's host is unplugged mid-sentence (its link goes down: packets dropped, connections
stall open) and the call fails over to the other STT host; plugged back in, the old owner
stands down and the call goes on. An LLM host unplugged mid-turn loses nothing either: its
turn is generated again on the other LLM host. Real services and nats-servers, instant
models (the LLM at a slow model's pace, so a cut lands mid-turn); needs root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hosts import HostNetwork, bridged_hosts
from tests.integration.conftest import log_with
from voxbus_cli.caller import load_wav
from voxbus_cli.nats_cluster import NatsCluster
from voxbus_cli.stack import ping_services
from voxbus_common.tokens import MediaTokens, new_key_spec
from voxbus_testkit.instant import HEARD, REPLY, instant_env
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]
CLIP = load_wav(ROOT / "speech" / "arctic_aew_a0001.wav")
GATEWAY_PORT = 8765  # the gateway host's own port space: nothing else listens there
# host -> the service it runs
SERVICES = {"memory": "memory", "llm-a": "llm", "llm-b": "llm", "tts": "tts",
            "stt-a": "stt", "stt-b": "stt", "gateway": "gateway"}
REPLICAS = {"memory": 1, "llm": 2, "tts": 1, "stt": 2, "gateway": 1}


@dataclass
class Hosted:
    net: HostNetwork
    cluster: NatsCluster
    logs: dict[str, Path]  # host -> its service's log
    procs: dict[str, subprocess.Popen[bytes]]
    gateway_url: str
    token: str

    def call(self) -> LiveCall:
        return LiveCall(self.gateway_url, token=self.token)


async def wait_until_served(hosted: Hosted, timeout_s: float = 120.0) -> None:
    """Until every replica answers the bus ping over its link (bounded)."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, int] = {}
    while any(status.get(s, 0) < n for s, n in REPLICAS.items()):
        dead = {h: p.returncode for h, p in hosted.procs.items() if p.poll() is not None}
        assert not dead, f"services exited: {dead}"
        assert time.monotonic() < deadline, f"not all replicas answered: {status}"
        try:
            status = await ping_services(hosted.cluster.url, wait_s=1.0)
        except Exception:  # (the cluster settling): asked again
            status = {}


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    workdir = tmp_path_factory.mktemp("hosts")
    logs = workdir / "logs"
    logs.mkdir()
    with bridged_hosts(*SERVICES) as net:
        cluster = NatsCluster(workdir / "nats", size=3, host=net.address, log_dir=logs)
        cluster.start()
        try:
            keys = new_key_spec("hosts")
            env = {**instant_env(), "PYTHONPATH": str(ROOT), "VOXBUS_NATS_URL": cluster.url,
                   "VOXBUS_NATS_REPLICAS": "3", "VOXBUS_METRICS_PORT": "0",
                   "VOXBUS_LLM_PROVIDER": "voxbus_testkit.instant:slow_llm"}  # (cut mid-turn)
            gateway = net.hosts["gateway"].address
            extra = {"gateway": {"VOXBUS_GATEWAY_HOST": gateway,
                                 "VOXBUS_GATEWAY_PORT": str(GATEWAY_PORT),
                                 "VOXBUS_MEDIA_TOKEN_KEYS": keys}}
            procs = {host: net.run(host, [sys.executable, "-m", f"voxbus_{service}"],
                                   env={**os.environ, **env, **extra.get(host, {})},
                                   log=logs / f"{host}.log")
                     for host, service in SERVICES.items()}
            result = Hosted(net, cluster, {h: logs / f"{h}.log" for h in SERVICES}, procs,
                            f"ws://{gateway}:{GATEWAY_PORT}/v1/pcm",
                            MediaTokens(keys).issue("host-test"))
            asyncio.run(wait_until_served(result))
            yield result
        finally:
            net.teardown()  # the services first, while NATS is there for their goodbyes
            cluster.stop()
            for log in sorted(logs.glob("[!n]*.log")):  # services (shown on a failure)
                print(f"\n===== {log.name} (last lines) =====")
                print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))


def is_turn(event: dict[str, Any]) -> bool:
    return event["type"] == "turn" and bool(event["user_text"])


def is_speech_start(event: dict[str, Any]) -> bool:
    return bool(event["type"] == "vad" and event["event"] == "speech_start")


async def first_log(line: str, logs: dict[str, Path], timeout_s: float = 60.0) -> str:
    """log_with in a thread: the caller keeps streaming meanwhile."""
    return await asyncio.to_thread(log_with, line, logs, timeout_s)


async def test_an_stt_host_cut_off_mid_sentence_fails_over_and_stands_down(
        hosted: Hosted) -> None:
    stt = {h: hosted.logs[h] for h in ("stt-a", "stt-b")}
    async with hosted.call() as call:
        owner = await first_log(f"call_id={call.call_id} turn=0 session started", stt)
        other = next(h for h in stt if h != owner)
        call.speak(CLIP)
        await call.wait_for(is_speech_start)
        hosted.net.cut(owner)  # unplugged mid-sentence
        try:
            turn = await call.wait_for(is_turn)
            assert turn["user_text"] == HEARD and turn["agent_text"], turn
            # the sentence was heard by the other host, from the owner's checkpoint
            await first_log(f"call_id={call.call_id} turn=0 call taken over",
                            {other: stt[other]})
        finally:
            hosted.net.heal(owner)
        # plugged back in, the old owner finds the call's lease moved: never two owners
        await first_log("another replica owns this call now", {owner: stt[owner]}, 120.0)
        mark = len(call.events)
        call.speak(CLIP)  # and the call goes on
        again = await call.wait_for(is_turn, mark)
        assert again["user_text"] == HEARD and again["agent_text"], again
        finals = [e for e in call.events if e["type"] == "transcript" and e["final"]]
        assert len(finals) == 2, finals  # each sentence once: not lost, not repeated
    dead = {h: p.returncode for h, p in hosted.procs.items() if p.poll() is not None}
    assert not dead, f"services exited: {dead}"
    await wait_until_served(hosted)  # the cut-off host serves again


async def test_an_llm_host_cut_off_mid_turn_loses_nothing(hosted: Hosted) -> None:
    llm = {h: hosted.logs[h] for h in ("llm-a", "llm-b")}
    async with hosted.call() as call:
        call.speak(CLIP)
        final = await call.wait_for(lambda e: e["type"] == "transcript" and e["final"])
        await call.wait_for(lambda e: e["type"] == "agent_text" and e["turn"] == final["turn"])
        owner = await first_log(f"call_id={call.call_id} turn={final['turn']} turn started",
                                llm)  # the turn is being generated there
        other = next(h for h in llm if h != owner)
        hosted.net.cut(owner)  # unplugged while it streams the answer
        try:
            turn = await call.wait_for(is_turn)
            assert turn["user_text"] == HEARD, turn
            assert not turn["interrupted"] and turn["agent_text"] == REPLY.strip(), turn
            await first_log(f"call_id={call.call_id} turn={turn['turn']} turn started "
                            "redelivered=True", {other: llm[other]})
        finally:
            hosted.net.heal(owner)
        mark = len(call.events)
        call.speak(CLIP)  # and the call goes on
        again = await call.wait_for(is_turn, mark)
        assert again["user_text"] == HEARD and again["agent_text"] == REPLY.strip(), again
    await wait_until_served(hosted)  # the cut-off LLM host serves again
