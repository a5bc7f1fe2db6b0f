"""Hostile or broken callers get a clear error or a clean call end; services keep running."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import nats
import pytest

from tests.integration.conftest import SPEECH, assert_services_alive, words
from tests.integration.test_first_call import stored_session
from voxbus.v1.llm_pb2 import ContextReply
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack


async def read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, object]]:
    events = []
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            events.append(json.loads(msg.data))
    return events


@pytest.mark.parametrize("call_id", ["a.b", "x*", "has space", ">"])
async def test_call_id_that_is_not_one_subject_token_is_refused(stack: Stack,
                                                                call_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = stack.gateway_url.replace("ws://", "http://")
        async with http.get(url, params={"call_id": call_id}) as resp:
            assert resp.status == 400
            assert "one NATS subject token" in await resp.text()


async def test_bad_sample_rate_is_refused(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(stack.gateway_url, params={"sample_rate": "12345"})
        assert err.value.status == 400


@pytest.mark.parametrize(("payload", "expected"), [
    (b"\x01" * 641, "whole 16-bit samples"),
    (b"RIFF\x24\x08\x00\x00WAVEfmt " + b"\x00" * 100, "container"),
    (b"\x00" * 64_000, "longer than"),
])
async def test_non_audio_frames_end_the_call_with_a_reason(stack: Stack, payload: bytes,
                                                           expected: str) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.gateway_url)
        await ws.send_bytes(b"\x00" * 640)
        await ws.send_bytes(payload)
        events = await read_until_closed(ws)
        assert ws.close_code == 1003
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert any(expected in str(m) for m in errors), events
    assert events[-1]["type"] == "ended"


async def test_garbage_text_frames_get_errors_but_the_call_continues(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.gateway_url)
        await ws.send_str("not json {")
        await ws.send_str(json.dumps({"type": "dance"}))
        await ws.send_bytes(b"\x00" * 640)
        await ws.send_str(json.dumps({"type": "stop"}))
        events = await read_until_closed(ws)
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert len(errors) == 2 and "JSON" in str(errors[0]) and "unknown command" in str(errors[1])
    assert events[-1] == {"type": "ended", "reason": "caller hung up"}


async def test_abrupt_disconnect_mid_utterance_keeps_what_was_said(stack: Stack) -> None:
    pcm = load_wav(SPEECH / "ls_dev_2412-153948-0000.wav")
    cut = pcm[: 16000 * 2 * 4]  # hang up 4 s into an 11.7 s sentence
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.gateway_url, params={"call_id": "cut-off"})
        for i in range(0, len(cut), 640):
            await ws.send_bytes(cut[i : i + 640])
        await ws.close()  # no stop message, no trailing silence
    session = await stored_session(stack, "cut-off")
    assert session.ended_reason == "caller disconnected"
    said = words(" ".join(t.text for t in session.turns if t.role == "user"))
    assert "reader" in said or "excuse me" in said, said
    assert_services_alive(stack)


@pytest.mark.parametrize("junk", [b"", b"\xff\xfe garbage \x00\x01", bytes(range(256)) * 4])
async def test_garbage_on_the_bus_is_dropped_not_fatal(stack: Stack, junk: bytes) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        for subject in ("vb.work.calls", "vb.work.llm.junk", "vb.work.tts.junk"):
            await js.publish(subject, junk)
        for subject in ("vb.call.junk.ctl", "vb.call.junk.in.audio", "vb.call.junk.out.llm"):
            await nc.publish(subject, junk)
        reply = ContextReply()
        reply.ParseFromString((await nc.request("vb.rpc.memory.context", junk, timeout=10)).data)
        # memory answers every context request: an error, or an empty context
        assert reply.error or not reply.messages
        await nc.flush()
    finally:
        await nc.close()
    assert_services_alive(stack)


async def test_a_following_call_still_works(stack: Stack) -> None:
    result = await place_call(stack.gateway_url, load_wav(SPEECH / "ls_test_2830-3980-0043.wav"),
                              timeout_s=120)
    assert "experience" in words(result.caller_text)
    assert result.turns and result.turns[-1]["agent_text"]
    assert_services_alive(stack)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxbus_cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_without_gateway_says_so(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/pcm"
    out = run_cli("call", str(SPEECH / "ls_test_2830-3980-0043.wav"), "--url", url)
    assert out.returncode == 2
    assert "no gateway reachable" in out.stderr


def test_cli_refuses_a_file_that_is_not_audio(tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_text("hello")
    out = run_cli("call", str(bad))
    assert out.returncode == 2 and "not a readable audio file" in out.stderr


def test_cli_json_output(stack: Stack, tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    out = run_cli("call", str(SPEECH / "arctic_aew_a0003.wav"), "--url", stack.gateway_url,
                  "--json", "--out", str(reply))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "shook hands" in words(doc["caller_text"])
    assert doc["agent_text"] and doc["reply_audio_seconds"] > 0.3
    assert doc["latency_ms"]["voice_to_voice"] > 0
    import soundfile as sf

    data, rate = sf.read(str(reply))
    assert rate == 16000 and len(data) > 4800


async def test_a_flooding_caller_is_cut_off_while_another_call_is_served(stack: Stack) -> None:
    async def flood() -> int | None:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(stack.gateway_url.replace("/v1/pcm", "/v1/twilio"))
            await ws.send_str(json.dumps({"event": "start", "start": {
                "callSid": "CAflood0001", "mediaFormat": {"encoding": "audio/x-mulaw",
                                                          "sampleRate": 8000}}}))
            for _ in range(2000):
                if ws.closed:
                    break
                await ws.send_str("{garbage")
            async for _ in ws:
                pass
            return ws.close_code

    good = place_call(stack.gateway_url, load_wav(SPEECH / "osr_us0034_8k_s10.wav"),
                      timeout_s=120)
    close_code, result = await asyncio.gather(flood(), good)
    assert close_code == 1008, "the flooding stream must be closed for policy violation"
    assert "bell" in words(result.caller_text)
    assert result.turns and result.turns[-1]["agent_text"]
    assert_services_alive(stack)
