"""NATS restarts under a live call: every service reconnects by itself, the streams the
restart lost (memory storage) are recreated, the live call is heard again and answered, and
new calls work. Nothing hangs: every wait is bounded. Real services and nats-server (killed
and started again on the same port and data directory), instant models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import running_instant_stack
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import start_nats, stop_all
from voxbus_cli.stack import Stack, ping_services
from voxbus_testkit.instant import HEARD
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "speech"


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_instant_stack(tmp_path_factory.mktemp("restart")) as stack:
        yield stack


async def restart_nats(stack: Stack) -> None:
    nats_proc = stack.procs[0]  # the stack starts NATS first
    stop_all([nats_proc])
    port = int(stack.nats_url.rsplit(":", 1)[1])
    assert stack.log_dir is not None
    proc, _ = start_nats(stack.workdir / "nats", port=port,
                         log=(stack.log_dir / "nats-2.log").open("ab"))
    stack.procs[0] = proc
    deadline = time.monotonic() + 60
    while True:  # every service reconnects by itself (0.5 s reconnect wait)
        try:
            ready = await ping_services(stack.nats_url)
        except Exception:
            ready = {}
        if all(ready.get(s) for s in ("gateway", "stt", "llm", "tts", "memory")):
            return
        assert time.monotonic() < deadline, f"services did not come back: {ready}"
        await asyncio.sleep(0.1)


async def test_a_live_call_survives_a_nats_restart(restartable: Stack) -> None:
    clip = load_wav(SPEECH / "arctic_aew_a0001.wav")
    async with LiveCall(restartable.gateway_url) as call:
        call.speak(clip)
        await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        await restart_nats(restartable)
        mark = len(call.events)
        call.speak(clip)  # heard and answered again after the restart
        turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"], mark)
        assert turn["user_text"] == HEARD and turn["agent_text"]
    async with LiveCall(restartable.gateway_url) as fresh:  # and a new call works
        fresh.speak(clip)
        turn = await fresh.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
        assert turn["user_text"] == HEARD
    assert all(p.poll() is None for p in restartable.service_procs.values())
