"""Admission control: when speech recognition is full, a new call is refused up front with a
reason (HTTP 503, Retry-After) instead of joining and degrading everyone; capacity that frees
up is offered again. Real services and nats-server, instant models, one STT replica that
takes a single call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import running_instant_stack
from voxbus_cli.stack import Stack
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def one_seat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("admission")
    with running_instant_stack(workdir, VOXBUS_STT_MAX_CALLS="1") as stack:
        yield stack


async def admission(http: aiohttp.ClientSession, stack: Stack, until: str) -> None:
    """Wait (bounded) until the gateway's admission state starts with `until`."""
    url = stack.gateway_url.replace("ws://", "http://").replace("/v1/pcm", "/healthz")
    deadline = time.monotonic() + 60
    while True:  # another process's heartbeat (0.3 s) has to reach the gateway
        async with http.get(url) as resp:
            state = (await resp.json())["admission"]
        if state.startswith(until):
            return
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)


async def test_a_full_stage_refuses_new_calls_with_a_reason(one_seat: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        await admission(http, one_seat, "open")
        async with LiveCall(one_seat.gateway_url):
            await admission(http, one_seat, "speech recognition is at capacity")
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(one_seat.gateway_url)
            assert refused.value.status == 503
            assert refused.value.headers is not None
            assert refused.value.headers.get("Retry-After") == "5"
        await admission(http, one_seat, "open")  # the seat is free again
        async with LiveCall(one_seat.gateway_url) as again:
            assert again.call_id
