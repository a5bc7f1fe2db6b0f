"""Barge-in edge cases with real models: the agent's own voice leaking back into the caller's
microphone must not interrupt it, and a backchannel ("okay") pauses it only briefly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.integration.conftest import SPEECH, assert_services_alive, extra_gateway
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack

FRAME = 640


async def converse(stack: Stack, call_id: str, question: bytes, *, echo_gain: float = 0.0,
                   echo_delay_frames: int = 5, extra: bytes = b"",
                   extra_after_agent_s: float = 0.6) -> list[dict[str, Any]]:
    """Ask `question`; optionally echo the agent's audio back into the 'microphone', and/or
    say `extra` once the agent has spoken `extra_after_agent_s`. Returns the events after
    the first agent turn finished (or was cut)."""
    events: list[dict[str, Any]] = []
    delay_line: deque[bytes] = deque()
    agent_frames = 0
    first_turn = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.gateway_url, params={"call_id": call_id})

        async def receive() -> None:
            nonlocal agent_frames
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    agent_frames += 1
                    if echo_gain:
                        x = np.frombuffer(msg.data, dtype="<i2") * echo_gain
                        delay_line.append(x.astype("<i2").tobytes())
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    events.append(event)
                    if event["type"] == "turn" and event["turn"] >= 1:
                        first_turn.set()

        receiver = asyncio.create_task(receive())
        started, n = time.monotonic(), 0
        pending_extra = bytearray()
        extra_started = False
        deadline = time.monotonic() + 120
        while not first_turn.is_set() and time.monotonic() < deadline:
            if n * FRAME < len(question):
                frame = question[n * FRAME : (n + 1) * FRAME].ljust(FRAME, b"\0")
            else:
                frame = b"\0" * FRAME
                if echo_gain and len(delay_line) > echo_delay_frames:
                    frame = delay_line.popleft()
                if extra and not extra_started and agent_frames * 0.02 >= extra_after_agent_s:
                    extra_started = True
                    pending_extra += extra
                if pending_extra:
                    frame = bytes(pending_extra[:FRAME]).ljust(FRAME, b"\0")
                    del pending_extra[:FRAME]
            await ws.send_bytes(frame)
            n += 1
            await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))
        await ws.send_str(json.dumps({"type": "stop"}))
        await asyncio.wait_for(receiver, timeout=30)
    assert first_turn.is_set(), f"the agent never finished a turn: {events[-5:]}"
    return events


def brief(events: list[dict[str, Any]]) -> list[str]:
    """The events in one line each, short enough for an assertion message to show them all."""
    keys = ("phase", "reason", "final", "text", "agent_text", "interrupted", "correlation")
    return [" ".join([e["type"], *(f"{k}={e[k]!r}" for k in keys if k in e)]) for e in events
            if e["type"] not in ("transcript", "agent_text") or e.get("final")]


async def test_the_agents_own_echo_does_not_interrupt_it(stack: Stack) -> None:
    events = await converse(stack, "echo-test-1", load_wav(SPEECH / "osr_us0034_8k_s01.wav"),
                            echo_gain=0.5)
    turn = next(e for e in events if e["type"] == "turn")
    assert not turn["interrupted"], turn
    assert not [e for e in events if e["type"] == "clear"], "echo caused a barge-in"
    user_turns = [e for e in events if e["type"] == "transcript" and e.get("final")]
    assert len(user_turns) == 1, f"the echo became a user turn: {user_turns}"
    assert_services_alive(stack)


@pytest.fixture(scope="module")
def okay_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """'Okay.' spoken by the Piper voice (made in its own process)."""
    path = tmp_path_factory.mktemp("backchannel") / "okay.wav"
    code = ("import sys, numpy as np, soundfile as sf\n"
            "from voxbus_tts.piper_voice import PiperTextToSpeech\n"
            "from voxbus_common.audio import resample_pcm16\n"
            "tts = PiperTextToSpeech()\n"
            "pcm = resample_pcm16(b''.join(tts.synthesize('Okay.')), tts.sample_rate, 16000)\n"
            "sf.write(sys.argv[1], np.frombuffer(pcm, dtype='<i2'), 16000)\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    return load_wav(Path(path))


async def test_a_backchannel_pauses_the_agent_only_briefly(stack: Stack,
                                                           okay_clip: bytes) -> None:
    # "okay" soon after the agent starts: the small model's answer (sampled) can be a single
    # short clause, which a later "okay" would find already finished
    events = await converse(stack, "backchannel-1",
                            load_wav(SPEECH / "ls_test_4507-16021-0012.wav"),
                            extra=okay_clip, extra_after_agent_s=0.2)
    phases = [e["phase"] for e in events if e["type"] == "barge_in"]
    assert phases[:2] == ["paused", "resumed"], brief(events)
    turn = next(e for e in events if e["type"] == "turn")
    assert not turn["interrupted"], ("a backchannel must not cut the agent off", brief(events))
    skipped = [e for e in events if e["type"] == "turn_skipped"]
    assert skipped and skipped[0]["reason"] == "backchannel", brief(events)


@pytest.fixture(scope="module")
def impatient_gateway(stack: Stack) -> Iterator[str]:
    with extra_gateway(stack, "idle", {"VOXBUS_IDLE_REPROMPT_S": "2",
                                       "VOXBUS_IDLE_HANGUP_S": "6"}) as base:
        yield base


async def test_silence_gets_a_reprompt_then_a_hang_up(impatient_gateway: str) -> None:
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://{impatient_gateway}/v1/pcm",
                                   params={"call_id": "idle-1"})

        async def line() -> None:  # an open line with nobody talking
            started, n = time.monotonic(), 0
            while not ws.closed:
                await ws.send_bytes(b"\0" * FRAME)
                n += 1
                await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))

        sender = asyncio.create_task(line())
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
        sender.cancel()
    turns = [e for e in events if e["type"] == "turn"]
    assert turns and turns[0]["agent_text"] == "Are you still there?"
    assert events[-1] == {"type": "ended", "reason": "idle timeout"}
