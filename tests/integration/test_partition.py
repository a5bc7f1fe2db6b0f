"""Short network partitions between one service and NATS, through a proxy that can stall
(packets stop, connections stay open) or cut (connections reset) that service's route.
The service rejoins by itself and the live call goes on without losing what the caller
said: an STT owner stalled mid-sentence is failed over and, once back, finds the call's
lease moved and stops (never two owners); a gateway cut off mid-sentence reconnects and
its call's sentence is heard and answered. Real services and nats-server, instant models."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    add_replica,
    gateway_process,
    log_with,
    running_instant_stack,
    wait_for_replicas,
)
from tests.netsplit import netsplit
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_testkit.instant import HEARD
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "speech" / "arctic_aew_a0001.wav"


@pytest.fixture(scope="module")
def split_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_instant_stack(tmp_path_factory.mktemp("partition")) as stack:
        yield stack


async def test_a_gateway_cut_off_mid_sentence_rejoins(split_stack: Stack) -> None:
    stack = split_stack
    assert stack.log_dir is not None
    with netsplit(stack.nats_url) as route, \
            gateway_process(stack, "split", {"VOXBUS_NATS_URL": route.url}) as (base, proc):
        log = {"split": stack.log_dir / "gateway-split.log"}
        async with LiveCall(f"ws://{base}/v1/pcm") as call:
            call.speak(load_wav(CLIP))
            await call.wait_for(lambda e: e["type"] == "vad" and e["event"] == "speech_start")
            route.cut()
            log_with("nats disconnected", log)
            route.heal()
            turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
            assert turn["user_text"] == HEARD and turn["agent_text"]
        assert proc.poll() is None
        log_with("nats reconnected", log)


async def test_a_stalled_stt_owner_is_failed_over_and_stands_down(split_stack: Stack) -> None:
    stack = split_stack
    stack.service_procs["stt"].send_signal(signal.SIGTERM)  # idle: replaced by two below
    stack.service_procs["stt"].wait(timeout=60)
    with netsplit(stack.nats_url) as route_a, netsplit(stack.nats_url) as route_b:
        routes = {"a": route_a, "b": route_b}
        replicas = {name: add_replica(stack, "stt", name, route.url)
                    for name, route in routes.items()}
        logs = {name: path for name, (_, path) in replicas.items()}
        await wait_for_replicas(stack, "stt", 2)
        clip = load_wav(CLIP)
        async with LiveCall(stack.gateway_url) as call:
            owner = log_with(f"call_id={call.call_id} turn=0 session started", logs)
            call.speak(clip)
            await call.wait_for(lambda e: e["type"] == "vad" and e["event"] == "speech_start")
            routes[owner].stall()  # the owner's route goes dark mid-sentence
            turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
            assert turn["user_text"] == HEARD and turn["agent_text"]
            routes[owner].heal()
            # back, the old owner finds the call's lease moved and stops: never two owners
            log_with("another replica owns this call now", {owner: logs[owner]})
            mark = len(call.events)
            call.speak(clip)  # and the call goes on
            again = await call.wait_for(
                lambda e: e["type"] == "turn" and e["user_text"], mark)
            assert again["user_text"] == HEARD and again["agent_text"]
            finals = [e for e in call.events if e["type"] == "transcript" and e["final"]]
            assert len(finals) == 2, finals  # each sentence once: not lost, not repeated
        assert all(proc.poll() is None for proc, _ in replicas.values())
        await wait_for_replicas(stack, "stt", 2)  # the stalled replica serves again
        for proc, _ in replicas.values():  # (their routes end with the proxies)
            proc.kill()
    # (last in the module: its replicas lose their routes when the proxies stop)
