"""The SIP edge when it is locked down: digest authentication (sipp answers our 401),
hold and resume by re-INVITE, CANCEL while ringing, and SIP over TLS with SRTP media
(a small Python caller: sipp has no SRTP) whose audio only decrypts with the SDES keys."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pylibsrtp import Error as SrtpFailure
from pylibsrtp import Policy, Session

from tests.integration.conftest import (
    SPEECH,
    assert_services_alive,
    gateway_process,
    self_signed_certificate,
    wait_for_session,
    words,
)
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus.v1.memory_pb2 import Session as CallSession
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.audio import resample_pcm16, rms_dbfs
from voxbus_common.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voxbus_gateway.sip.message import SipMessage, parse, split_head
from voxbus_gateway.sip.sdp import parse_offer
from voxbus_testkit.sip_peer import SCENARIOS, exchange, free_port_range, sip_request

USER, PASSWORD = "trunk", "s3cret-pass"
LONG_ANSWER = ("Thank you for calling. Our opening hours are from nine in the morning until "
               "eleven at night, every day of the week including public holidays. We also "
               "deliver to every address within five kilometres of the restaurant.")


@dataclass
class SecuredSip:
    sip_port: int
    tls_port: int
    trust: ssl.SSLContext
    workdir: Path


@pytest.fixture(scope="module")
def secured_sip(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredSip]:
    folder = tmp_path_factory.mktemp("sip-tls")
    cert, key, trust = self_signed_certificate(folder)
    base, sip_port, tls_port = free_port_range(8), free_port(), free_port()
    env = {"VOXBUS_TLS_CERT_FILE": str(cert), "VOXBUS_TLS_KEY_FILE": str(key),
           "VOXBUS_SIP_PORT": str(sip_port), "VOXBUS_SIP_TLS_PORT": str(tls_port),
           "VOXBUS_SIP_RTP_PORT_MIN": str(base), "VOXBUS_SIP_RTP_PORT_MAX": str(base + 7),
           "VOXBUS_SIP_AUTH_USER": USER, "VOXBUS_SIP_AUTH_PASSWORD": PASSWORD,
           "VOXBUS_SIP_RING_MS": "1500", "VOXBUS_SIP_SRTP": "required"}
    with gateway_process(stack, "sip-secured", env, ssl_context=trust):
        yield SecuredSip(sip_port, tls_port, trust, folder)


def run_sipp(name: str, port: int, workdir: Path, password: str = PASSWORD,
             timeout_s: int = 120) -> subprocess.CompletedProcess[bytes]:
    local, media = free_port_range(1), free_port_range(2)
    return subprocess.run(
        ["sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / name), "-i", "127.0.0.1",
         "-mi", "127.0.0.1", "-p", str(local), "-mp", str(media), "-m", "1", "-nostdin",
         "-au", USER, "-ap", password, "-timeout", str(timeout_s), "-timeout_error"],
        cwd=workdir, capture_output=True, timeout=180)


def test_trunk_authenticates_then_holds_and_resumes(secured_sip: SecuredSip,
                                                     stack: Stack) -> None:
    done = run_sipp("uac_auth_hold.xml", secured_sip.sip_port, secured_sip.workdir)
    assert done.returncode == 0, done.stdout.decode(errors="replace")[-3000:]
    wrong = run_sipp("uac_auth_hold.xml", secured_sip.sip_port, secured_sip.workdir,
                     password="guess", timeout_s=15)  # challenged again: no 200 ever comes
    assert wrong.returncode != 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(30)
        sdp = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               "m=audio 40000 RTP/AVP 0\r\n")
        forged = ('Authorization: Digest username="trunk", realm="voxbus", nonce="1.ab", '
                  'uri="sip:agent@127.0.0.1", response="0000"\r\n')
        for n, extra in enumerate(["", forged]):  # no credentials; a nonce we never issued
            assert " 401 " in exchange(s, sip_request("INVITE", f"auth{n}", sdp, extra),
                                       secured_sip.sip_port)
    assert_services_alive(stack)


def test_cancel_while_ringing_ends_the_call(secured_sip: SecuredSip) -> None:
    done = run_sipp("uac_auth_cancel.xml", secured_sip.sip_port, secured_sip.workdir)
    assert done.returncode == 0, done.stdout.decode(errors="replace")[-3000:]


class StreamCaller:
    """SIP over TLS or TCP from the caller's side, just enough for one call with digest
    auth (sipp has no SRTP, and cannot start speaking when the agent does)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 call_id: str, local_port: int, transport: str = "TLS") -> None:
        self.reader, self.writer, self.call_id = reader, writer, call_id
        self.transport = transport
        self.local_port = local_port
        self.buffer = b""
        self.cseq = 0

    def send(self, method: str, extra: str = "", body: str = "", to_tag: str = "") -> None:
        self.cseq += 1 if method != "ACK" else 0
        tag = f";tag={to_tag}" if to_tag else ""
        head = (f"{method} sip:agent@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/{self.transport} 127.0.0.1:{self.local_port};branch=z9hG4bK"
                f"{os.urandom(4).hex()}"
                f"\r\nFrom: <sip:+15550003@127.0.0.1>;tag=srtp1\r\n"
                f"To: <sip:agent@127.0.0.1>{tag}\r\nCall-ID: {self.call_id}\r\n"
                f"CSeq: {self.cseq} {method}\r\n"
                f"Contact: <sip:caller@127.0.0.1;transport={self.transport.lower()}>\r\n"
                f"Max-Forwards: 70\r\n{extra}"
                + ("Content-Type: application/sdp\r\n" if body else "")
                + f"Content-Length: {len(body.encode())}\r\n\r\n{body}")
        self.writer.write(head.encode())

    async def call(self, sdp: str) -> tuple[SipMessage, str]:
        """INVITE, answer the digest challenge, ACK the 200: (the 200, our peer's tag)."""
        self.send("INVITE", body=sdp)
        challenge = await self.final()
        assert challenge.status == 401, challenge.reason
        self.send("ACK")
        self.send("INVITE", digest(challenge.get("www-authenticate"), "INVITE",
                                   "sip:agent@127.0.0.1"), body=sdp)
        ok = await self.final()
        assert ok.status == 200, ok.reason
        to_tag = ok.get("to").split("tag=")[1]
        self.send("ACK", to_tag=to_tag)
        return ok, to_tag

    async def hang_up(self, to_tag: str) -> None:
        self.send("BYE", to_tag=to_tag)
        assert (await self.final()).status == 200

    async def final(self) -> SipMessage:
        """The next final response (provisional ones skipped)."""
        while True:
            while split_head(self.buffer) is None:
                self.buffer += await asyncio.wait_for(self.reader.read(65536), 60)
            try:
                msg, used = parse(self.buffer, stream=True)
            except ValueError:
                self.buffer += await asyncio.wait_for(self.reader.read(65536), 60)
                continue
            self.buffer = self.buffer[used:]
            if msg.status >= 200:
                return msg


def digest(challenge: str, method: str, uri: str) -> str:
    fields = dict(part.strip().split("=", 1) for part in challenge[7:].split(","))
    realm, nonce = fields["realm"].strip('"'), fields["nonce"].strip('"')
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = md5(f"{USER}:{realm}:{PASSWORD}"), md5(f"{method}:{uri}")
    response = md5(f"{ha1}:{nonce}:00000001:abcdef:auth:{ha2}")
    return (f'Authorization: Digest username="{USER}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}", qop=auth, nc=00000001, cnonce="abcdef", '
            "algorithm=MD5\r\n")


class RtpSocket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.second_of_audio = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(data)
        if len(self.packets) >= 50:
            self.second_of_audio.set()
        for count, event in self._waiters:
            if len(self.packets) >= count:
                event.set()

    async def more(self, count: int) -> None:
        """Until `count` more packets have arrived."""
        event = asyncio.Event()
        self._waiters.append((len(self.packets) + count, event))
        await asyncio.wait_for(event.wait(), 120)


async def test_tls_call_with_srtp_media(secured_sip: SecuredSip, stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    rtp_port = free_port_range(2)
    transport, rtp = await loop.create_datagram_endpoint(RtpSocket,
                                                         local_addr=("127.0.0.1", rtp_port))
    our_key = os.urandom(30)
    reader, writer = await asyncio.open_connection("127.0.0.1", secured_sip.tls_port,
                                                   ssl=secured_sip.trust)
    caller = StreamCaller(reader, writer, "srtp-call-1", writer.get_extra_info("sockname")[1])
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
           f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(our_key).decode()}\r\n"
           "a=sendrecv\r\n")
    try:
        ok, to_tag = await caller.call(sdp)
        answer = parse_offer(ok.body)
        assert answer.secure and answer.crypto, ok.body
        outbound = Session(Policy(key=our_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        inbound = Session(Policy(key=base64.b64decode(answer.crypto[0].key_b64),
                                 ssrc_type=Policy.SSRC_ANY_INBOUND))
        spoken = asyncio.Event()
        talker = asyncio.create_task(talk(transport, outbound.protect, answer.port, spoken))
        try:
            await wait_for_session(stack, "srtp-call-1", answered, timeout_s=180)
            await asyncio.wait_for(rtp.second_of_audio.wait(), 120)  # of the agent's answer
        finally:
            spoken.set()
            await talker
        await caller.hang_up(to_tag)
    finally:
        writer.close()
        transport.close()
    decoded, refused = bytearray(), 0
    for packet in rtp.packets:
        try:
            plain = inbound.unprotect(packet)
        except SrtpFailure:
            refused += 1
            continue
        decoded += ulaw_to_pcm16(plain[12:])
    assert refused == 0 and len(decoded) > 16000
    assert rms_dbfs(bytes(decoded)) > -45
    session = await wait_for_session(stack, "srtp-call-1", lambda s: s.ended_unix_ns > 0)
    assert session.edge == "sip" and "storm" in words(session.turns[0].text)


def answered(s: CallSession) -> bool:
    return any(t.role == "user" and "storm" in t.text.lower() for t in s.turns) and any(
        t.role == "assistant" for t in s.turns)


async def talk(transport: asyncio.DatagramTransport, protect: Callable[[bytes], bytes],
               port: int, stop: asyncio.Event, again: asyncio.Event | None = None) -> None:
    """The clip as RTP (or SRTP: `protect`) in real time, then silence until `stop`; the
    clip starts over each time `again` is set (talking over the agent)."""
    ulaw = pcm16_to_ulaw(resample_pcm16(load_wav(SPEECH / "osr_us0034_8k_s08.wav"), 16000, 8000))
    started, seq, clip_start = time.monotonic(), 0, 0
    while not stop.is_set():
        if again is not None and again.is_set():
            again.clear()
            clip_start = seq
        i = seq - clip_start
        frame = ulaw[i * 160 : (i + 1) * 160].ljust(160, b"\xff")
        header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
        transport.sendto(protect(header + b"\x00\x00\x12\x34" + frame), ("127.0.0.1", port))
        seq += 1
        await asyncio.sleep(max(0.0, started + seq * 0.02 - time.monotonic()))


async def test_barge_in_over_sip_stops_the_agent(secured_sip: SecuredSip, stack: Stack) -> None:
    """The caller talks over the agent's RTP answer: the answer is cut, and what is
    recorded is only what was played before the interruption."""
    loop = asyncio.get_running_loop()
    rtp_port = free_port_range(2)
    transport, rtp = await loop.create_datagram_endpoint(RtpSocket,
                                                         local_addr=("127.0.0.1", rtp_port))
    reader, writer = await asyncio.open_connection("127.0.0.1", secured_sip.sip_port)
    caller = StreamCaller(reader, writer, "sip-barge-1", writer.get_extra_info("sockname")[1],
                          transport="TCP")
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    try:
        ok, to_tag = await caller.call(sdp)
        stop, again = asyncio.Event(), asyncio.Event()
        talker = asyncio.create_task(talk(transport, lambda b: b, parse_offer(ok.body).port,
                                          stop, again))
        try:
            await wait_for_session(stack, "sip-barge-1", answered, timeout_s=180)
            async with stack.control_channel() as channel:
                await ControlStub(channel).Say(pb.SayRequest(
                    call_id="sip-barge-1", text=LONG_ANSWER, interrupt=True))
            await rtp.more(50)  # a second of it has been heard
            again.set()  # the caller talks over it
            session = await wait_for_session(
                stack, "sip-barge-1",
                lambda s: any(t.role == "assistant" and t.interrupted for t in s.turns),
                timeout_s=120)
        finally:
            stop.set()
            await talker
        await caller.hang_up(to_tag)
    finally:
        writer.close()
        transport.close()
    cut = next(t for t in session.turns if t.role == "assistant" and t.interrupted)
    assert cut.text and len(cut.text) < len(LONG_ANSWER), cut.text  # what was heard, only
    assert LONG_ANSWER.startswith(cut.text.rstrip(".")[:20]), cut.text
