"""Hostile or broken callers get a clear error or a clean call end; services keep running."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from aiohttp import web

from tests.integration.conftest import SPEECH, assert_services_alive, gateway_process, words
from tests.integration.test_first_call import stored_session
from voxbus.v1.llm_pb2 import ContextReply
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.log_limit import DEFAULT_LIMIT as WARNINGS_PER_CONNECTION
from voxbus_gateway.http_guard import HttpGuard
from voxbus_gateway.http_guard import log as guard_log
from voxbus_testkit.live_call import LiveCall

LOGGER = guard_log.name


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
    assert stack.log_dir is not None  # 50 protocol errors, a bounded number of log lines:
    flood_lines = warning_lines(stack.log_dir / "gateway.log", "CAflood0001")
    assert 0 < len(flood_lines) <= WARNINGS_PER_CONNECTION + 3, "\n".join(flood_lines)


def warning_lines(log: Path, call_id: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines()
            if f"call_id={call_id} " in line and " WARNING " in line]


# -- slow and malformed HTTP (http_guard.py): in-process first, then a real gateway ---------


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """An aiohttp app behind HttpGuard (header and body bounds of 0.3 s) on a free port; the
    /slow handler answers once the event is set."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=await request.text())

    async def refuse(request: web.Request) -> web.Response:
        raise web.HTTPForbidden(text="not you")

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    app = web.Application()
    app.add_routes([web.get("/slow", slow), web.get("/ok", echo), web.post("/echo", echo),
                    web.get("/refuse", refuse), web.get("/crash", crash)])
    guard = HttpGuard(header_timeout_s=0.3, body_timeout_s=0.3)
    runner = web.AppRunner(guard.install(app), keepalive_timeout=120)
    await runner.setup()
    server = await guard.listen(runner, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], release
    finally:
        release.set()
        server.close()
        await runner.cleanup()


async def until_closed(reader: asyncio.StreamReader, timeout_s: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded wait)."""
    data = bytearray()
    async with asyncio.timeout(timeout_s):
        while chunk := await reader.read(65536):
            data += chunk
    return bytes(data)


async def drip(writer: asyncio.StreamWriter) -> None:
    """A header line every 0.1 s (a slowloris), until cancelled."""
    while True:
        await asyncio.sleep(0.1)
        writer.write(b"X-Drip: 1\r\n")


async def test_slow_headers_are_cut_off_but_a_running_request_is_not(
        guarded: tuple[int, asyncio.Event]) -> None:
    port, release = guarded
    busy_reader, busy = await asyncio.open_connection("127.0.0.1", port)
    busy.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")  # complete: its handler runs
    loris_reader, loris = await asyncio.open_connection("127.0.0.1", port)
    loris.write(b"GET /ok HTTP/1.1\r\nHost: t\r\n")  # never finished
    dripping = asyncio.create_task(drip(loris))
    try:
        assert await until_closed(loris_reader) == b""  # closed without an answer
    finally:
        dripping.cancel()
        loris.close()
    release.set()  # the busy request outlived the header bound: it is still answered
    async with asyncio.timeout(30):
        assert (await busy_reader.readuntil(b"late")).startswith(b"HTTP/1.1 200")
    busy.close()


async def test_a_kept_alive_connection_gets_the_bound_for_its_next_request(
        guarded: tuple[int, asyncio.Event]) -> None:
    port, _ = guarded
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
    async with asyncio.timeout(30):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 0" in head
    writer.write(b"GET /ok HTTP/1.1\r\n")  # the next request stalls after its first line
    assert await until_closed(reader) == b""
    writer.close()


async def test_a_slow_body_is_408_and_a_whole_one_is_read(guarded: tuple[int, asyncio.Event]
                                                          ) -> None:
    port, _ = guarded
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
    async with asyncio.timeout(30):  # (aiohttp then lingers a while for the body's rest)
        answer = await reader.readuntil(b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    writer.close()
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{port}/echo", data=b"hello") as resp:
        assert (resp.status, await resp.text()) == (200, "hello")


async def test_client_errors_are_warnings_without_a_traceback_server_errors_stay_errors(
        guarded: tuple[int, asyncio.Event], caplog: pytest.LogCaptureFixture) -> None:
    port, _ = guarded
    caplog.set_level(logging.INFO)
    for raw in (b"GET /ok HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
                b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
                b"GET /ok HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
                b"GET /refuse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        answer = await until_closed(reader)
        assert answer.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), answer[:80]
        writer.close()
    client_errors = [r for r in caplog.records if r.name in ("aiohttp.server", LOGGER)]
    assert client_errors and all(
        r.levelno == logging.WARNING and not r.exc_info for r in client_errors), [
        (r.name, r.levelname, r.getMessage()) for r in client_errors]
    assert all(len(r.getMessage()) < 300 and "\n" not in r.getMessage() for r in client_errors)
    assert "HTTP request refused" in {r.getMessage() for r in client_errors}
    caplog.clear()
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/crash") as resp:
        assert resp.status == 500
    crashes = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert crashes and crashes[0].levelno == logging.ERROR and crashes[0].exc_info


@pytest.fixture(scope="module")
def guarded_gateway(stack: Stack) -> Iterator[tuple[str, int, Path]]:
    """A gateway replica with a 1 s header bound and an AudioSocket port: (host:port,
    audiosocket port, its log)."""
    audiosocket = free_port()
    env = {"VOXBUS_HTTP_HEADER_TIMEOUT_S": "1", "VOXBUS_AUDIOSOCKET_PORT": str(audiosocket)}
    with gateway_process(stack, "guarded", env) as (base, _):
        assert stack.log_dir is not None
        yield base, audiosocket, stack.log_dir / "gateway-guarded.log"


async def test_a_real_gateway_closes_a_slowloris_while_a_call_goes_on(
        guarded_gateway: tuple[str, int, Path]) -> None:
    base, _, log = guarded_gateway
    async with LiveCall(f"ws://{base}/v1/pcm") as call:  # on the line longer than the bound
        host, port = base.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        dripping = asyncio.create_task(drip(writer))
        try:
            assert await until_closed(reader, timeout_s=60) == b""
        except ConnectionError:
            pass  # (a reset is a close too)
        finally:
            dripping.cancel()
            writer.close()
        assert call.events[-1]["type"] not in ("ended", "socket_closed"), call.events[-1]
    assert [e["type"] for e in call.events[-2:]] == ["ended", "socket_closed"]
    assert call.events[-2]["reason"] == "caller hung up"
    assert "HTTP request headers not complete in time" in log.read_text(errors="replace")


async def test_a_real_gateway_logs_bad_requests_as_warnings(
        guarded_gateway: tuple[str, int, Path]) -> None:
    base, _, log = guarded_gateway
    host, port = base.split(":")
    mark = len(log.read_text(errors="replace"))
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
                b"GET /v1/pcm HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"):  # an upgrade without its key
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        async with asyncio.timeout(30):
            assert (await reader.readline()).split(b" ")[1] == b"400"
        writer.close()
    written = log.read_text(errors="replace")[mark:]
    assert "Traceback" not in written and "Error handling request" not in written, written
    assert written.count("WARNING") >= 3, written
    assert "bad HTTP request refused" in written and "HTTP request refused" in written


async def test_an_audiosocket_flood_writes_a_bounded_number_of_log_lines(
        guarded_gateway: tuple[str, int, Path]) -> None:
    _, audiosocket, log = guarded_gateway
    call_uuid = uuid.uuid4()
    reader, writer = await asyncio.open_connection("127.0.0.1", audiosocket)
    writer.write(b"\x01" + struct.pack(">H", 16) + call_uuid.bytes)
    bad = 2000
    for i in range(bad):  # odd-sized audio frames and frames of an unknown type
        writer.write(b"\x10\x01\x41" + b"\x00" * 321 if i % 2 else b"\x42\x00\x04junk")
        await writer.drain()
    writer.write(b"\x00\x00\x00")  # hang up
    await writer.drain()
    await until_closed(reader, timeout_s=60)  # the gateway ends the call and closes
    writer.close()
    mine = warning_lines(log, call_uuid.hex)
    assert len(mine) <= WARNINGS_PER_CONNECTION + 3, "\n".join(mine)
    full = [line for line in mine if "frame" in line and "dropped" in line]
    assert len(full) == WARNINGS_PER_CONNECTION
    counted = sum(int(m) for line in mine for m in re.findall(r" suppressed=(\d+)", line))
    assert len(full) + counted == bad, "\n".join(mine)
