"""The SIP/RTP edge against a real SIP peer: sipp places calls to a gateway replica with
SIP on (the real models of the session stack answer), a relay in the media path records
the agent's RTP and impairs the caller's, and raw sockets send what no real peer should."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.wer import word_errors
from tests.integration.conftest import (
    SPEECH,
    assert_services_alive,
    gateway_process,
    wait_for_session,
    words,
)
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus.v1.memory_pb2 import Session
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.audio import rms_dbfs
from voxbus_testkit.sip_peer import (
    RELAY_IP,
    Impairment,
    MediaRelay,
    exchange,
    free_port_range,
    scenario,
    sip_request,
    start_sipp,
    write_clip,
)

REFERENCE = "A severe storm tore down the barn."
PORTS = 8  # four RTP/RTCP pairs


@dataclass
class SipGateway:
    sip_port: int
    rtp_base: int
    workdir: Path
    proc: subprocess.Popen[bytes]

    @property
    def clip(self) -> Path:
        path = self.workdir / "storm.ulaw"
        return path if path.exists() else write_clip(
            load_wav(SPEECH / "osr_us0034_8k_s08.wav"), path)


@pytest.fixture(scope="module")
def sip_gw(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipGateway]:
    base, port = free_port_range(PORTS), free_port()
    env = {"VOXBUS_SIP_PORT": str(port), "VOXBUS_SIP_MEDIA_ADDRESS": RELAY_IP,
           "VOXBUS_SIP_RTP_PORT_MIN": str(base), "VOXBUS_SIP_RTP_PORT_MAX": str(base + PORTS - 1),
           "VOXBUS_SIP_ALLOW": "127.0.0.1/32,127.0.0.2/32"}
    with gateway_process(stack, "sip", env) as (_, proc):
        yield SipGateway(port, base, tmp_path_factory.mktemp("sip"), proc)


def spoke_pressed_and_answered(s: Session) -> bool:
    spoke = [t.turn_id for t in s.turns if t.role == "user" and "storm" in t.text.lower()]
    return bool(spoke) and any("pressed 5" in t.text for t in s.turns) and any(
        t.role == "assistant" and t.turn_id >= spoke[0] for t in s.turns)


async def finish_sipp(proc: subprocess.Popen[bytes]) -> str:
    await asyncio.to_thread(proc.wait, 120)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}):\n{out[-3000:]}"
    return out


async def until_session_or_sipp_exit(stack: Stack, call_id: str,
                                     proc: subprocess.Popen[bytes]) -> None:
    """The call reaches the state we wait for, or sipp gave up first (fail with its output)."""
    session = asyncio.create_task(
        wait_for_session(stack, call_id, spoke_pressed_and_answered, timeout_s=180))
    exited = asyncio.create_task(asyncio.to_thread(proc.wait, 200))
    await asyncio.wait({session, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not session.done():
        session.cancel()
        await finish_sipp(proc)
        raise AssertionError("sipp ended the call before the agent answered")
    exited.cancel()
    session.result()


async def agent_ended_call(stack: Stack, gw: SipGateway, ending: str, transport: str = "u1",
                           impairment: Impairment | None = None) -> tuple[Session, MediaRelay]:
    """A call in which the caller speaks and presses 5; once the agent has answered, the
    control API ends it (EndCall: our BYE) or transfers it (Transfer: our REFER, then BYE)."""
    async with MediaRelay(gw.rtp_base, PORTS, impairment or Impairment()) as relay:
        proc = start_sipp(scenario(gw.workdir, gw.clip, ending), gw.sip_port, gw.workdir,
                          transport)
        call_id = f"1-{proc.pid}_127_0_0_1"  # sipp's Call-ID as a subject token
        try:
            await until_session_or_sipp_exit(stack, call_id, proc)
            await relay.wait_agent_audio(seconds=1.0)
            async with stack.control_channel() as channel:
                control = ControlStub(channel)
                if ending == "refer":
                    await control.Transfer(pb.TransferRequest(call_id=call_id,
                                                              target="+15550100100"))
                else:
                    await control.EndCall(pb.EndCallRequest(call_id=call_id, reason="test"))
            await finish_sipp(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        session = await wait_for_session(stack, call_id, lambda s: s.ended_unix_ns > 0)
    return session, relay


def user_text(session: Session) -> str:
    return " ".join(t.text for t in session.turns if t.role == "user" and "pressed" not in t.text)


def assert_agent_speech(relay: MediaRelay) -> None:
    audio = relay.agent_audio()
    assert len(audio) > 16000, f"only {len(audio) / 16000:.2f} s of agent audio over RTP"
    assert rms_dbfs(audio) > -45, "the agent's RTP audio is silent"


async def test_sip_call_speech_dtmf_and_our_bye(stack: Stack, sip_gw: SipGateway) -> None:
    session, relay = await agent_ended_call(stack, sip_gw, "agent")
    assert session.edge == "sip"
    said = words(user_text(session))
    assert "storm" in said and "barn" in said, said
    assert any("pressed 5" in t.text for t in session.turns)
    assert_agent_speech(relay)
    errors, total = word_errors(REFERENCE, user_text(session))
    print(f"\nSIP clean call: WER {errors}/{total}, heard {user_text(session)!r}")
    assert_services_alive(stack)


async def test_sip_transfer_sends_refer_then_bye_over_tcp(stack: Stack,
                                                           sip_gw: SipGateway) -> None:
    session, relay = await agent_ended_call(stack, sip_gw, "refer", transport="t1")
    assert "storm" in words(user_text(session))
    assert_agent_speech(relay)


async def test_sip_caller_hangs_up_and_the_transcript_is_kept(stack: Stack,
                                                              sip_gw: SipGateway) -> None:
    async with MediaRelay(sip_gw.rtp_base, PORTS):
        proc = start_sipp(scenario(sip_gw.workdir, sip_gw.clip, "caller", hold_ms=3000),
                          sip_gw.sip_port, sip_gw.workdir)
        await finish_sipp(proc)
    session = await wait_for_session(stack, f"1-{proc.pid}_127_0_0_1",
                                     lambda s: s.ended_unix_ns > 0)
    assert session.ended_reason == "caller hung up", session.ended_reason
    assert "storm" in words(user_text(session)), user_text(session)


async def test_sip_call_survives_loss_and_jitter(stack: Stack, sip_gw: SipGateway) -> None:
    impaired = Impairment(loss=0.05, reorder=0.05, jitter_ms=40.0)
    session, relay = await agent_ended_call(stack, sip_gw, "agent", impairment=impaired)
    assert relay.dropped > 0 and relay.reordered > 0
    errors, total = word_errors(REFERENCE, user_text(session))
    print(f"\nSIP call with 5% loss, 5% reordered, 0-40 ms jitter: WER {errors}/{total} "
          f"({relay.dropped} dropped, {relay.reordered} reordered), "
          f"heard {user_text(session)!r}")
    assert errors <= total // 2, user_text(session)  # transcribed, not necessarily perfectly
    assert_agent_speech(relay)


GOOD_SDP = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40000 RTP/AVP 0\r\n")


def test_malformed_sip_gets_the_right_error(sip_gw: SipGateway, stack: Stack) -> None:
    port = sip_gw.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(30)
        assert exchange(s, sip_request("OPTIONS", "o1"), port).startswith("SIP/2.0 200")
        assert " 405 " in exchange(s, sip_request("SUBSCRIBE", "m1"), port)
        assert " 481 " in exchange(s, sip_request("BYE", "nodialog"), port)
        assert " 420 " in exchange(s, sip_request("INVITE", "r1", GOOD_SDP,
                                                  "Require: 100rel\r\n"), port)
        bad_sdps = ["", "v=0\r\nm=audio 9 RTP/AVP 0\r\n",  # no offer; no address
                    GOOD_SDP.replace("RTP/AVP 0", "RTP/AVP 18"),  # G.729 only
                    GOOD_SDP.replace("RTP/AVP", "RTP/SAVP"),  # SRTP keys over plain UDP
                    "\x00\xff garbage"]
        for n, sdp in enumerate(bad_sdps):
            reply = exchange(s, sip_request("INVITE", f"sdp{n}", sdp), port)
            assert " 488 " in reply, (sdp, reply)
        fuzzed = [sip_request("INVITE", "f1").replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"),
                  sip_request("INVITE", "f2").replace(b"Content-Length: 0", b"Content-Length: 99"),
                  sip_request("INVITE", "f3").replace(b"Max-Forwards", b"Max\x00Forwards"),
                  sip_request("INVITE", "f4", extra="X-Big: " + "a" * 3000 + "\r\n")]
        for data in fuzzed:
            assert " 400 " in exchange(s, data, port), data[:80]
        assert " 513 " in exchange(s, sip_request("INVITE", "huge", "v=0\r\n" + "a=x\r\n" * 5000),
                                   port)
        s.settimeout(0.5)
        for junk in (b"\x00" * 40, b"GET / HTTP/1.1\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
            s.sendto(junk, ("127.0.0.1", port))  # nothing to address: dropped
            with pytest.raises(TimeoutError):
                s.recv(65536)
    assert sip_gw.proc.poll() is None
    assert_services_alive(stack)


def test_unknown_peer_flood_is_dropped(sip_gw: SipGateway) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.3", 0))  # not in VOXBUS_SIP_ALLOW
        for n in range(2000):
            s.sendto(sip_request("INVITE", f"flood{n}", GOOD_SDP), ("127.0.0.1", sip_gw.sip_port))
        s.settimeout(2.0)
        replies = []
        try:
            while True:
                replies.append(s.recv(65536).decode(errors="replace").split("\r\n")[0])
        except TimeoutError:
            pass
    assert len(replies) <= 1 and all(" 403 " in r for r in replies), replies
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ok:  # an allowed peer still is
        ok.bind(("127.0.0.1", 0))
        ok.settimeout(30)
        assert exchange(ok, sip_request("OPTIONS", "after"), sip_gw.sip_port).endswith("200 OK")


async def test_bad_rtp_does_not_hurt_the_call(stack: Stack, sip_gw: SipGateway) -> None:
    """While a call runs, a stranger sprays its RTP ports with junk, oversized packets and
    unknown payload types: the call is transcribed and answered as usual."""
    stop = asyncio.Event()

    async def spray() -> None:
        junk = [b"\x80", b"\x00" * 40, b"\x80\x12" + b"\x00" * 1600, b"\x80\x7f" + b"\x01" * 170,
                b"\x80\x00\x00\x01" + b"\x00" * 8 + b"\xff" * 160]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.3", 0))
            while not stop.is_set():
                for port in range(sip_gw.rtp_base, sip_gw.rtp_base + PORTS):
                    for packet in junk:
                        s.sendto(packet, ("127.0.0.1", port))
                await asyncio.sleep(0.01)

    sprayer = asyncio.create_task(spray())
    try:
        session, relay = await agent_ended_call(stack, sip_gw, "agent")
    finally:
        stop.set()
        await sprayer
    assert "storm" in words(user_text(session))
    assert_agent_speech(relay)
