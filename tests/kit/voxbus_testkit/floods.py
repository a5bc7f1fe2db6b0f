"""Hostile load for the gateway's edges, run beside a real call (tests/integration/
test_hostile_load.py in `make test`, bench/hostile.py in `make bench`).

Each flood comes from its own loopback address (127.0.0.0/8 is all loopback on Linux), so
the per-source limits see one attacker and the good caller stays 127.0.0.1. The good call is
a Twilio Media Stream (μ-law frames in real time) whose voice-to-voice is measured where a
caller meets it: from the last voiced frame sent to the first agent frame received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from voxbus_cli.speech_end import last_speech_frame
from voxbus_cli.twilio_phone import TwilioPhone
from voxbus_common.audio import resample_pcm16
from voxbus_common.g711 import pcm16_to_ulaw

SDP = ("v=0\r\no=flood 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


@dataclass
class FloodResult:
    """What the flood met: answers by status (SIP) or outcome (sockets)."""

    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def sip_invite(port: int, source: str, n: int, wave: int = 0) -> bytes:
    body = SDP.format(ip=source, port=40000 + 2 * (n % 1000))
    call_id = f"flood-{os.getpid()}-{wave}-{n}"
    return (f"INVITE sip:agent@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:5999;branch=z9hG4bKflood{n}\r\n"
            f"From: <sip:flood@{source}>;tag=f{n}\r\nTo: <sip:agent@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:flood@{source}:5999>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


async def sip_invite_flood(port: int, count: int, source: str, stop: asyncio.Event,
                           wave: int = 0) -> FloodResult:
    """`count` INVITEs that are never ACKed (each answer is read and ignored) from one UDP
    socket, kept open until `stop` so retransmitted 200 OKs land somewhere."""
    result = FloodResult()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    seen: dict[str, int] = {}  # Call-ID -> best status seen

    async def read() -> None:
        while True:
            data = await loop.sock_recv(sock, 65536)
            text = data.decode(errors="replace")
            status = text.split(" ", 2)[1] if text.startswith("SIP/2.0 ") else "?"
            call_id = next((line.split(":", 1)[1].strip() for line in text.split("\r\n")
                            if line.lower().startswith(("call-id:", "i:"))), "")
            if status.isdigit() and int(status) >= 200:
                seen[call_id] = int(status)

    reader = asyncio.create_task(read())
    try:
        for n in range(count):
            await loop.sock_sendto(sock, sip_invite(port, source, n, wave),
                                   ("127.0.0.1", port))
            result.sent += 1
        await stop.wait()
    finally:
        reader.cancel()
        sock.close()
    result.outcomes.update(str(s) for s in seen.values())
    result.outcomes["unanswered"] = result.sent - len(seen)
    return result


async def garbage_ws_flood(url: str, count: int, source: str, stop: asyncio.Event
                           ) -> FloodResult:
    """`count` WebSocket calls that never send a valid start: two text frames of garbage
    each (protocol errors, not fatal ones), then an open, silent socket until `stop` or
    until the gateway closes it (its handshake timeout)."""
    result = FloodResult()
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(n: int) -> str:
            try:
                async with http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)
                                           ) as ws:
                    await ws.send_str("{not json" * 4)
                    await ws.send_str("[1, 2, 3]")  # JSON, but no object
                    closed = asyncio.ensure_future(ws.receive())
                    done = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({closed, done}, return_when=asyncio.FIRST_COMPLETED)
                    closed.cancel()
                    done.cancel()
                    return "closed by gateway" if closed.done() else "held"
            except aiohttp.WSServerHandshakeError as exc:
                return f"refused {exc.status}"
            except (aiohttp.ClientError, OSError):
                return "error"

        outcomes = await asyncio.gather(*(one(n) for n in range(count)))
    result.sent = count
    result.outcomes.update(outcomes)
    return result


async def audiosocket_flood(port: int, count: int, source: str, stop: asyncio.Event
                            ) -> FloodResult:
    """`count` AudioSocket connections that never finish their UUID frame (two bytes of
    its header, then nothing): each is held until the gateway's handshake timeout."""
    result = FloodResult()

    async def one() -> str:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                          local_addr=(source, 0))
        except OSError:
            return "refused"
        try:
            writer.write(b"\x01\x00")  # a UUID frame's type and half its length
            await writer.drain()
            eof = asyncio.ensure_future(reader.read())
            done = asyncio.ensure_future(stop.wait())
            await asyncio.wait({eof, done}, return_when=asyncio.FIRST_COMPLETED)
            eof.cancel()
            done.cancel()
            return "closed by gateway" if eof.done() else "held"
        except OSError:
            return "closed by gateway"
        finally:
            writer.close()

    result.sent = count
    result.outcomes.update(await asyncio.gather(*(one() for _ in range(count))))
    return result


@dataclass
class GoodTurn:
    voice_to_voice_ms: float | None  # None: the agent did not answer
    greeting_frames: int


async def good_twilio_turn(ws_url: str, clip_16k: bytes, call_sid: str,
                           answer_timeout_s: float = 60.0) -> GoodTurn:
    """One Twilio call: hear the greeting out (if any), say `clip_16k`, measure the time
    from its last voiced frame to the agent's first answering frame; then hang up."""
    ulaw = pcm16_to_ulaw(resample_pcm16(clip_16k, 16000, 8000))
    frames = [ulaw[i:i + 160].ljust(160, b"\xff") for i in range(0, len(ulaw), 160)]
    last_voiced = max(0, last_speech_frame(clip_16k))
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        phone = TwilioPhone(ws)
        receiving = asyncio.create_task(phone.receive())
        playing = asyncio.create_task(phone.play())
        line_open = asyncio.Event()
        try:
            await phone.start(call_sid)
            greeting = await _quiet_after_greeting(phone)
            before = phone.media_frames
            started = time.monotonic()
            spoke_at = 0.0
            for n, frame in enumerate(frames):
                await phone.media(frame)
                if n == last_voiced:
                    spoke_at = time.monotonic()
                await asyncio.sleep(max(0.0, started + (n + 1) * 0.02 - time.monotonic()))
            silence = asyncio.create_task(phone.silence_until(line_open))
            deadline = time.monotonic() + answer_timeout_s
            while phone.media_frames <= before and time.monotonic() < deadline:
                phone.got_media.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(phone.got_media.wait(), 1.0)
            line_open.set()
            await silence
            if phone.media_frames <= before:
                return GoodTurn(None, greeting)
            return GoodTurn((phone.media_times[before] - spoke_at) * 1000, greeting)
        finally:
            line_open.set()
            receiving.cancel()
            playing.cancel()
            with contextlib.suppress(Exception):
                await phone.send({"event": "stop"})


async def _quiet_after_greeting(phone: TwilioPhone, first_s: float = 3.0,
                                quiet_s: float = 1.0, cap_s: float = 30.0) -> int:
    """Frames of greeting heard: wait up to `first_s` for one, then until no frame came for
    `quiet_s` (at most `cap_s`): the caller speaks after the greeting, as people do."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(phone.got_media.wait(), first_s)
    deadline = time.monotonic() + cap_s
    while phone.media_frames and time.monotonic() < deadline:
        if time.monotonic() - phone.media_times[-1] >= quiet_s:
            break
        phone.got_media.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(phone.got_media.wait(), quiet_s)
    return phone.media_frames
