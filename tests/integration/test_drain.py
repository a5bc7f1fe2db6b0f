"""Graceful drain (what Kubernetes does on a rollout): SIGTERM makes a gateway refuse new
calls and report not-ready, while its live call goes on being answered until the caller
hangs up; then the process exits cleanly, well before the drain timeout."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.integration.conftest import SPEECH, gateway_process, words
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_testkit.live_call import LiveCall


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status


async def test_sigterm_drains_live_calls_and_refuses_new_ones(stack: Stack) -> None:
    with gateway_process(stack, "drain", {"VOXBUS_DRAIN_TIMEOUT_S": "300"}) as (base, proc):
        async with LiveCall(f"ws://{base}/v1/pcm") as call, aiohttp.ClientSession() as http:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60
            while await status(http, f"http://{base}/healthz") != 503:
                # bounded wait for another process's signal handler to run
                assert time.monotonic() < deadline and proc.poll() is None
                await asyncio.sleep(0.05)
            # draining is alive: no liveness restart
            assert await status(http, f"http://{base}/livez") == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"ws://{base}/v1/pcm")
            assert refused.value.status == 503

            call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))  # still served
            turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
            assert "danger trail" in words(turn["user_text"]) and turn["agent_text"]
            assert proc.poll() is None
        assert proc.wait(timeout=60) == 0  # the caller hung up: nothing left to drain
