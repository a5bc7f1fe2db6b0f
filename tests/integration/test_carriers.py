"""Every other carrier adapter against the real stack, each through a small simulator of
that carrier's side of the protocol: the caller speaks a real clip in the carrier's audio
format and must be transcribed; the agent's answer must come back as decodable speech."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import SPEECH, assert_services_alive, wait_for_session, words
from voxbus.v1.memory_pb2 import Session
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_common.audio import resample_pcm16, rms_dbfs
from voxbus_common.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16

Encode = Callable[[bytes], bytes]


@dataclass
class Carrier:
    path: str
    rate: int
    encode: Encode  # PCM16 LE at `rate` -> carrier bytes
    decode: Encode  # carrier bytes -> PCM16 LE at `rate`
    hello: Callable[[str], list[Any]]
    media: Callable[[bytes, int], Any]  # (frame, seq) -> message (str JSON or bytes)
    audio_out: Callable[[aiohttp.WSMessage], bytes | None]
    bye: Any


def same(b: bytes) -> bytes:
    return b


def json_media(key: str, event: str = "media", **extra: Any) -> Callable[[bytes, int], str]:
    def make(frame: bytes, seq: int) -> str:
        return json.dumps({"event": event, key: "S1", **extra, "media": {
            "track": "inbound", "chunk": str(seq), "timestamp": str(seq * 20),
            "payload": base64.b64encode(frame).decode()}})
    return make


def json_out(event: str) -> Callable[[aiohttp.WSMessage], bytes | None]:
    def read(msg: aiohttp.WSMessage) -> bytes | None:
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        doc = json.loads(msg.data)
        if doc.get("event") == event or doc.get("type") == event:
            inner = doc.get("media") or doc.get("data") or {}
            return base64.b64decode(str(inner.get("payload") or inner.get("audio_b64") or ""))
        return None
    return read


def binary_out(msg: aiohttp.WSMessage) -> bytes | None:
    return bytes(msg.data) if msg.type == aiohttp.WSMsgType.BINARY else None


CARRIERS = {
    "telnyx": Carrier(
        "/v1/telnyx", 8000, pcm16_to_alaw, alaw_to_pcm16,
        lambda cid: [{"event": "connected", "version": "1.0.0"},
                     {"event": "start", "sequence_number": "1", "stream_id": "S1",
                      "start": {"call_control_id": f"v3:{cid}", "media_format": {
                          "encoding": "PCMA", "sample_rate": 8000, "channels": 1}}}],
        json_media("stream_id"), json_out("media"), {"event": "stop", "stream_id": "S1"}),
    "exotel": Carrier(
        "/v1/exotel", 8000, same, same,
        lambda cid: [{"event": "connected"},
                     {"event": "start", "stream_sid": "S1", "start": {
                         "stream_sid": "S1", "call_sid": cid, "media_format": {
                             "encoding": "base64", "sample_rate": "8000"}}}],
        json_media("stream_sid"), json_out("media"), {"event": "stop", "stream_sid": "S1"}),
    "plivo": Carrier(
        "/v1/plivo", 16000, same, same,
        lambda cid: [{"event": "start", "sequenceNumber": 0, "start": {
            "callId": cid, "streamId": "S1", "mediaFormat": {
                "encoding": "audio/x-l16", "sampleRate": 16000}}}],
        json_media("streamId"), json_out("playAudio"), {"event": "stop", "streamId": "S1"}),
    "teler": Carrier(
        "/v1/teler", 8000, same, same,
        lambda cid: [{"type": "start", "account_id": "A", "call_app_id": "B", "call_id": cid,
                      "stream_id": "S1", "message_id": 1,
                      "data": {"encoding": "audio/l16", "sample_rate": 8000, "channels": 1}}],
        lambda frame, seq: json.dumps({"type": "audio", "stream_id": "S1",
                                       "message_id": seq + 1, "data": {
                                           "audio_b64": base64.b64encode(frame).decode()}}),
        json_out("audio"), None),
    "vonage": Carrier(
        "/v1/vonage", 16000, same, same,
        lambda cid: [{"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
                      "uuid": cid}],
        lambda frame, seq: frame, binary_out, None),
    "asterisk-ws": Carrier(
        "/v1/asterisk", 8000, pcm16_to_ulaw, ulaw_to_pcm16,
        lambda cid: [f"MEDIA_START connection_id:{cid} channel:PJSIP/x-1 "
                     f"channel_id:{cid}.5 format:ulaw optimal_frame_size:160"],
        lambda frame, seq: frame, binary_out, "HANGUP"),
}


async def stream_real_time(send: Callable[[bytes, int], Awaitable[None]], audio: bytes,
                           frame_bytes: int, stop: asyncio.Event | None = None,
                           silence: bytes = b"") -> None:
    """Send `audio` in 20 ms frames at real-time pace, then silence until `stop`."""
    started, n = time.monotonic(), 0
    while True:
        if n * frame_bytes < len(audio):
            frame = audio[n * frame_bytes : (n + 1) * frame_bytes]
        elif stop is None or stop.is_set():
            return
        else:
            frame = silence
        n += 1
        await send(frame.ljust(frame_bytes, silence[:1] or b"\x00"), n)
        await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))


def caller_audio(carrier_rate: int, encode: Encode) -> tuple[bytes, bytes, int]:
    pcm = resample_pcm16(load_wav(SPEECH / "osr_us0034_8k_s08.wav"), 16000, carrier_rate)
    encoded = encode(pcm)
    frame = len(encode(b"\x00\x00" * (carrier_rate // 50)))
    return encoded, encode(b"\x00\x00" * (carrier_rate // 50)), frame


def assert_answered(session_text: str, reply_pcm: bytes) -> None:
    assert "storm" in session_text and "barn" in session_text, session_text
    assert len(reply_pcm) > 8000, "less than half a second of agent audio"
    assert rms_dbfs(reply_pcm) > -45, "the agent's audio is silent"


@pytest.mark.parametrize("name", list(CARRIERS))
async def test_carrier_adapter_call(stack: Stack, name: str) -> None:
    c = CARRIERS[name]
    call_id = f"carrier-{name}-1".replace("asterisk-ws", "ast")
    # carrier ids made into subject tokens: "v3:x" -> "v3_x", "x.5" -> "x_5"
    stored_id = {"telnyx": f"v3_{call_id}", "asterisk-ws": f"{call_id}_5"}.get(name, call_id)
    reply = bytearray()
    heard = asyncio.Event()  # over half a second of the agent's answer has come back
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.gateway_url.replace("/v1/pcm", c.path))
        for m in c.hello(call_id):
            await (ws.send_str(m if isinstance(m, str) else json.dumps(m)))

        async def receive() -> None:
            async for msg in ws:
                audio = c.audio_out(msg)
                if audio:
                    reply.extend(audio)
                    if not heard.is_set() and len(c.decode(bytes(reply))) > 8000:
                        heard.set()

        async def send(frame: bytes, seq: int) -> None:
            m = c.media(frame, seq)
            await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))

        receiver = asyncio.create_task(receive())
        audio, silence, frame_bytes = caller_audio(c.rate, c.encode)
        done = asyncio.Event()
        line = asyncio.create_task(stream_real_time(send, audio, frame_bytes, done, silence))
        session = await wait_for_session(stack, stored_id, lambda s: any(
            t.role == "assistant" for t in s.turns))
        # the stored turn can be ahead of its audio (call events do not wait for playout)
        await asyncio.wait_for(heard.wait(), timeout=60)
        done.set()
        await line
        if c.bye is not None:
            await (ws.send_str(c.bye if isinstance(c.bye, str) else json.dumps(c.bye)))
        else:
            await ws.close()
        await asyncio.wait_for(receiver, timeout=30)
    said = words(" ".join(t.text for t in session.turns if t.role == "user"))
    assert_answered(said, c.decode(bytes(reply)))
    ended = await wait_for_session(stack, stored_id, lambda s: s.ended_unix_ns > 0)
    assert ended.edge == name
    assert_services_alive(stack)


async def test_asterisk_audiosocket_call(stack: Stack) -> None:
    port = int(stack.env["VOXBUS_AUDIOSOCKET_PORT"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    call_uuid = uuid.uuid4()
    writer.write(b"\x01" + struct.pack(">H", 16) + call_uuid.bytes)
    reply = bytearray()

    async def receive() -> None:
        while True:
            try:
                head = await reader.readexactly(3)
            except asyncio.IncompleteReadError:
                return
            payload = await reader.readexactly(struct.unpack(">H", head[1:])[0])
            if head[0] == 0x10:
                reply.extend(payload)
            elif head[0] == 0x00:
                return

    async def send(frame: bytes, seq: int) -> None:
        writer.write(b"\x10" + struct.pack(">H", len(frame)) + frame)
        await writer.drain()

    receiver = asyncio.create_task(receive())
    audio, silence, frame_bytes = caller_audio(8000, same)
    done = asyncio.Event()
    line = asyncio.create_task(stream_real_time(send, audio, frame_bytes, done, silence))
    writer.write(b"\x03\x00\x015")  # DTMF 5 as well
    def answered_speech_and_keypad(s: Session) -> bool:
        spoke = [t.turn_id for t in s.turns if t.role == "user" and "storm" in t.text.lower()]
        return bool(spoke) and any("pressed 5" in t.text for t in s.turns) and any(
            t.role == "assistant" and t.turn_id >= spoke[0] for t in s.turns)

    session = await wait_for_session(stack, call_uuid.hex, answered_speech_and_keypad)
    done.set()
    await line
    writer.write(b"\x00\x00\x00")  # hang up
    await writer.drain()
    await asyncio.wait_for(receiver, timeout=30)
    writer.close()
    said = words(" ".join(t.text for t in session.turns if t.role == "user"))
    assert_answered(said, bytes(reply))


@pytest.mark.parametrize("path", [c.path for c in CARRIERS.values()])
async def test_carrier_garbage_handshake_is_refused(stack: Stack, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(stack.gateway_url.replace("/v1/pcm", path))
        await ws.send_str('{"event": "media", "type": "audio"}')
        await ws.send_bytes(b"\x00" * 10)
        async for _ in ws:
            pass
        assert ws.close_code in (1003, 1008)
    assert_services_alive(stack)


