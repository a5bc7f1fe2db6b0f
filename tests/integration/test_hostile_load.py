"""Hostile load beside a real call: floods of never-ACKed SIP INVITEs, garbage WebSocket calls
and garbage AudioSocket connections, each from its own loopback address, while a good
Twilio caller talks. The good call is answered every time, no flood call ever starts (no
greeting, no STT session), no replica is declared dead, no service falls over, and no call
gets a second STT session. The good call's voice-to-voice is printed, not asserted (a
shared 2-core machine): `make bench` (bench/hostile.py) measures it with the real models.
Real services and nats-server, instant models."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import SPEECH, assert_services_alive, running_instant_stack
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_testkit.floods import (
    FloodResult,
    audiosocket_flood,
    garbage_ws_flood,
    good_twilio_turn,
    sip_invite_flood,
)

FLOOD_SIZE = 100  # the flood: 100 unconfirmed INVITEs or garbage calls
Flood = Callable[[Stack, asyncio.Event], Coroutine[Any, Any, FloodResult]]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("hostile")
    with running_instant_stack(
            workdir, VOXBUS_SIP_PORT=str(free_port()), VOXBUS_AUDIOSOCKET_PORT=str(free_port()),
            VOXBUS_GREETING="Hello, you are through to the test line.") as stack:
        yield stack


def metric(stack: Stack, service: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples matching `labels`, from the service's /metrics."""
    url = f"http://127.0.0.1:{stack.metrics_ports[service]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def unconfirmed(stack: Stack, edge: str) -> int:
    url = stack.gateway_url.replace("ws://", "http://").replace("/v1/pcm", "/healthz")
    loop = asyncio.get_running_loop()

    def read() -> int:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(json.loads(resp.read()).get("unconfirmed", {}).get(edge, 0))

    return await loop.run_in_executor(None, read)


async def wait_until_holding(stack: Stack, edge: str, flooding: asyncio.Task[FloodResult]
                             ) -> None:
    """Until the flood holds unconfirmed calls at the gateway (bounded)."""
    deadline = time.monotonic() + 60
    while await unconfirmed(stack, edge) == 0:
        assert not flooding.done(), flooding.result()
        assert time.monotonic() < deadline, f"the {edge} flood never reached the gateway"
        await asyncio.sleep(0.05)


def sip(stack: Stack, stop: asyncio.Event) -> Coroutine[Any, Any, FloodResult]:
    port = int(stack.env["VOXBUS_SIP_PORT"])
    return sip_invite_flood(port, FLOOD_SIZE, "127.0.0.3", stop)


def websocket(stack: Stack, stop: asyncio.Event) -> Coroutine[Any, Any, FloodResult]:
    url = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    return garbage_ws_flood(url, FLOOD_SIZE, "127.0.0.4", stop)


def audiosocket(stack: Stack, stop: asyncio.Event) -> Coroutine[Any, Any, FloodResult]:
    return audiosocket_flood(int(stack.env["VOXBUS_AUDIOSOCKET_PORT"]), FLOOD_SIZE,
                             "127.0.0.5", stop)


FLOODS: dict[str, tuple[Flood, str]] = {  # kind -> (flood, the edge it hits)
    "sip": (sip, "sip"), "websocket": (websocket, "twilio"),
    "audiosocket": (audiosocket, "audiosocket")}


@pytest.mark.parametrize("kind", list(FLOODS))
async def test_a_flood_does_not_stall_a_good_call(hostile: Stack, kind: str) -> None:
    stack = hostile
    clip = load_wav(SPEECH / "arctic_aew_a0001.wav")
    twilio = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    start_flood, edge = FLOODS[kind]
    quiet = await good_twilio_turn(twilio, clip, f"CAquiet{kind}")
    assert quiet.voice_to_voice_ms is not None and quiet.greeting_frames > 0
    flood_calls_before = metric(stack, "gateway", "voxbus_calls_total", edge=edge)
    twilio_calls_before = metric(stack, "gateway", "voxbus_calls_total", edge="twilio")

    stop = asyncio.Event()
    flooding = asyncio.create_task(start_flood(stack, stop))
    try:
        await wait_until_holding(stack, edge, flooding)
        during = await good_twilio_turn(twilio, clip, f"CAflood{kind}")
        stt_sessions = metric(stack, "stt", "voxbus_stt_sessions")
        flood_calls = (metric(stack, "gateway", "voxbus_calls_total", edge=edge)
                       - flood_calls_before)
    finally:
        stop.set()
    result = await flooding
    print(f"\n{kind} flood of {result.sent}: {dict(result.outcomes)}; good call "
          f"voice-to-voice {quiet.voice_to_voice_ms:.0f} ms quiet, "
          f"{during.voice_to_voice_ms or float('nan'):.0f} ms during the flood")

    assert during.voice_to_voice_ms is not None, "the good call was not answered"
    assert during.greeting_frames > 0  # its greeting played: it was admitted
    good_calls = metric(stack, "gateway", "voxbus_calls_total", edge="twilio")
    # no flood call started: no greeting, no STT session for anything unconfirmed
    if edge == "twilio":
        assert good_calls - twilio_calls_before == 1, "a garbage call was started"
    else:
        assert flood_calls == 0, f"{flood_calls} {edge} flood calls were started"
    assert stt_sessions <= 1  # (the good call's, at most)
    assert metric(stack, "gateway", "voxbus_replicas_lost_total") == 0
    assert_services_alive(stack)
    assert stack.log_dir is not None
    stt_log = (stack.log_dir / "stt.log").read_text(errors="replace")
    assert "another replica owns this call" not in stt_log  # never two owners
    assert "call taken over" not in stt_log  # no failover was needed
