"""Twilio Media Streams against the real stack: μ-law in, spoken μ-law answers with marks,
barge-in sends `clear`, and memory keeps only what the caller heard."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import nats
import pytest
from nats.aio.msg import Msg

from tests.integration.conftest import SPEECH, assert_services_alive, wait_for_session, words
from voxbus.v1.call_pb2 import CallEvent
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_cli.twilio_phone import TwilioSim
from voxbus_common.audio import rms_dbfs


def twilio_url(stack: Stack) -> str:
    return stack.gateway_url.replace("/v1/pcm", "/v1/twilio")


@asynccontextmanager
async def twilio_call(stack: Stack, call_sid: str) -> AsyncIterator[TwilioSim]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(twilio_url(stack))
        sim = TwilioSim(ws)
        tasks = [asyncio.create_task(sim.receive()), asyncio.create_task(sim.play())]
        await sim.start(call_sid)
        try:
            yield sim
        finally:
            if not ws.closed:
                await sim.send({"event": "stop", "stop": {"callSid": call_sid}})
                await asyncio.wait_for(tasks[0], timeout=30)
            for task in tasks:
                task.cancel()
            await ws.close()


async def test_twilio_caller_hears_a_spoken_mulaw_answer(stack: Stack) -> None:
    async with twilio_call(stack, "CAtwilio0001") as sim:
        await sim.speak(load_wav(SPEECH / "arctic_aew_a0003.wav"))
        line = asyncio.create_task(sim.silence_until(asyncio.Event()))
        session = await wait_for_session(stack, "CAtwilio0001",
                                         lambda s: any(t.role == "assistant" for t in s.turns))
        line.cancel()
    assert "shook hands" in words(" ".join(t.text for t in session.turns if t.role == "user"))
    agent = next(t for t in session.turns if t.role == "assistant")
    assert agent.text and not agent.interrupted
    assert sim.media_frames > 25, "less than half a second of agent audio"
    assert rms_dbfs(sim.played_pcm16()) > -45, "the agent's audio is silent"
    assert sim.marks_echoed, "no marks were sent with the agent's audio"
    ended = await wait_for_session(stack, "CAtwilio0001", lambda s: s.ended_unix_ns > 0)
    assert ended.ended_reason == "carrier ended the stream" and ended.edge == "twilio"


async def test_speaking_over_the_agent_clears_and_keeps_only_what_was_heard(
        stack: Stack) -> None:
    call_sid = "CAbargein0001"
    agent_turns: list[CallEvent.AgentTurn] = []
    nc = await nats.connect(stack.nats_url)

    async def on_control(msg: Msg) -> None:
        event = CallEvent()
        event.ParseFromString(msg.data)
        if event.WhichOneof("kind") == "agent_turn":
            agent_turns.append(event.agent_turn)

    await nc.subscribe(f"vb.call.{call_sid}.ctl", cb=on_control)
    try:
        async with twilio_call(stack, call_sid) as sim:
            await sim.speak(load_wav(SPEECH / "ls_test_4507-16021-0012.wav"))
            quiet = asyncio.Event()
            line = asyncio.create_task(sim.silence_until(quiet))
            await sim.wait_played(0.4)  # the agent is talking; the caller talks over it
            quiet.set()
            await line
            await sim.speak(load_wav(SPEECH / "osr_us0034_8k_s04.wav"))
            await asyncio.wait_for(sim.got_clear.wait(), timeout=30)
            line = asyncio.create_task(sim.silence_until(asyncio.Event()))
            session = await wait_for_session(
                stack, call_sid, lambda s: sum(t.role == "assistant" for t in s.turns) >= 2)
            line.cancel()
    finally:
        await nc.close()

    first, second = (t for t in session.turns if t.role == "assistant")
    assert first.interrupted and not second.interrupted
    cut = next(a for a in agent_turns if a.interrupted)
    heard, full = cut.heard_text.split(), cut.full_text.split()
    assert len(heard) < len(full), "the interrupted turn must not be stored whole"
    assert full[: len(heard)] == heard, "what was heard is a prefix of what was said"
    assert first.text == cut.heard_text, "memory stores only the heard part"
    users = [words(t.text) for t in session.turns if t.role == "user"]
    assert "pink shell" in " ".join(users)


@pytest.mark.parametrize(("messages", "expected_close"), [
    ([{"event": "media", "media": {"payload": "AAAA"}}], 1008),  # media before start
    (["{not json", {"event": "start", "start": "nope"}], 1008),
    ([{"event": "start", "start": {"callSid": "CA.bad*id"}}], 1008),
    ([{"event": "start", "start": {"callSid": "CAfmt1",
                                   "mediaFormat": {"encoding": "audio/opus"}}}], 1003),
])
async def test_hostile_twilio_handshakes_are_refused(stack: Stack, messages: list[object],
                                                     expected_close: int) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(twilio_url(stack))
        for m in messages:
            await ws.send_str(m if isinstance(m, str) else json.dumps(m))
        async for _ in ws:
            pass
        assert ws.close_code == expected_close
    assert_services_alive(stack)


async def test_hostile_twilio_media_does_not_break_the_call(stack: Stack) -> None:
    call_sid = "CAhostile0001"
    async with twilio_call(stack, call_sid) as sim:
        bad = [
            "not json at all",
            json.dumps([1, 2, 3]),
            json.dumps({"event": "media", "media": {"payload": "%%% not base64 %%%"}}),
            json.dumps({"event": "media", "media": {"payload": base64.b64encode(
                b"\xff" * 100_000).decode()}}),
            json.dumps({"event": "media"}),
            json.dumps({"event": "dtmf", "dtmf": {"digit": "xyz"}}),
            json.dumps({"event": "teleport"}),
        ]
        for text in bad:
            await sim.ws.send_str(text)
        await sim.ws.send_bytes(b"\x00\x01binary")
        # out-of-order and duplicated frames are tolerated
        frames = [b"\xff" * 160] * 6
        for chunk in (3, 1, 2, 2, 5, 4, 6):
            await sim.send({"event": "media", "media": {
                "chunk": str(chunk), "payload": base64.b64encode(frames[0]).decode()}})
        await sim.send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "7"}})
        session = await wait_for_session(
            stack, call_sid, lambda s: any("pressed 7" in t.text for t in s.turns))
        assert not sim.ws.closed
    assert any(t.role == "user" and "7" in t.text for t in session.turns)
    assert_services_alive(stack)


async def test_unsigned_twiml_webhook_from_loopback(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        url = twilio_url(stack).replace("ws://", "http://") + "/voice"
        async with http.post(url, data={"CallSid": "CA1"}) as resp:
            assert resp.status == 200
            body = await resp.text()
    assert "<Connect><Stream url=" in body and "/v1/twilio" in body


