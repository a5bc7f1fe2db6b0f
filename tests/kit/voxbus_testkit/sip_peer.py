"""A real SIP caller for tests: sipp (Debian `sip-tester`) runs a scenario from sip/ beside it,
and a small RTP relay sits between it and the gateway's media ports, where it can record
the agent's audio and drop, reorder and delay the caller's packets.

The gateway advertises the relay's address in its SDP (VOXBUS_SIP_MEDIA_ADDRESS=127.0.0.2,
what a NAT deployment sets to its public address); the relay listens on 127.0.0.2 at the
same ports the gateway uses on 127.0.0.1 and forwards between the two.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from voxbus_common.audio import resample_pcm16
from voxbus_common.g711 import pcm16_to_ulaw, ulaw_to_pcm16

SCENARIOS = Path(__file__).parent / "sip"
DTMF_PCAP = Path("/usr/share/sip-tester/dtmf_2833_5.pcap")  # digit 5, from sip-tester
RELAY_IP, GATEWAY_IP = "127.0.0.2", "127.0.0.1"

CALLER_BYE = """  <pause milliseconds="HOLD_MS"/>
  <send retrans="500">
    <![CDATA[
BYE sip:agent@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp" <sip:+15550001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:agent@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"""

REFER = """  <recv request="REFER" timeout="240000">
    <action>
      <ereg regexp="sip:\\+15550100100@" search_in="hdr" header="Refer-To:" check_it="true"
            assign_to="1"/>
    </action>
  </recv>
  <send>
    <![CDATA[
SIP/2.0 202 Accepted
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  <Reference variables="1"/>
"""

AGENT_BYE = """  <recv request="BYE" timeout="240000"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>"""


def free_port_range(count: int) -> int:
    """An even base port with `count` ports free on both loopback addresses."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(30000, 60000, 2)
        socks: list[socket.socket] = []
        try:
            for ip in (GATEWAY_IP, RELAY_IP):
                for port in range(base, base + count):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    socks.append(s)
                    s.bind((ip, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def write_clip(pcm16_16k: bytes, path: Path, trailing_silence_s: float = 0.0) -> Path:
    """A raw μ-law 8 kHz file for sipp's rtp_stream (which stops at its end: a phone with
    silence suppression; trailing silence keeps the RTP flowing like one without)."""
    path.write_bytes(pcm16_to_ulaw(resample_pcm16(pcm16_16k, 16000, 8000))
                     + b"\xff" * int(8000 * trailing_silence_s))
    return path


def scenario(workdir: Path, clip: Path, ending: str, hold_ms: int = 2000,
             dtmf: bool = True, caller: str = "+15550001") -> Path:
    """The caller's script; `ending`: "caller" (BYE after hold_ms), "agent" (wait for our
    BYE), "refer" (accept our REFER to +15550100100, then our BYE)."""
    text = (SCENARIOS / "uac_call.xml").read_text()
    endings = {"caller": CALLER_BYE.replace("HOLD_MS", str(hold_ms)), "agent": AGENT_BYE,
               "refer": REFER + AGENT_BYE}
    text = text.replace("ENDING", endings[ending]).replace("CLIP", str(clip)).replace(
        "DTMF_PCAP", str(DTMF_PCAP)).replace("+15550001", caller)
    if not dtmf:
        text = "\n".join(line for line in text.splitlines() if "play_pcap_audio" not in line)
    path = workdir / f"uac_{ending}{'' if dtmf else '_nodtmf'}.xml"
    path.write_text(text)
    return path


def start_sipp(scenario_file: Path, sip_port: int, workdir: Path, transport: str = "u1"
               ) -> subprocess.Popen[bytes]:
    """One call from sipp to the gateway's SIP port (UDP unless transport="t1")."""
    local, media = free_port_range(1), free_port_range(2)
    cmd = ["sipp", f"{GATEWAY_IP}:{sip_port}", "-sf", str(scenario_file), "-i", GATEWAY_IP,
           "-mi", GATEWAY_IP, "-p", str(local), "-mp", str(media), "-m", "1", "-t", transport,
           "-nostdin", "-timeout", "300", "-timeout_error", "-trace_err",
           "-error_file", str(workdir / f"sipp-{local}-errors.log")]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@dataclass
class Impairment:
    loss: float = 0.0  # share of caller audio packets dropped
    reorder: float = 0.0  # share held back and sent after the next packet
    jitter_ms: float = 0.0  # extra delay, uniform in [0, jitter_ms]
    seed: int = 7


@dataclass
class MediaRelay:
    """Forwards RTP/RTCP between the caller (sipp) and the gateway; keeps what it saw."""

    base: int
    count: int
    impairment: Impairment = field(default_factory=Impairment)
    agent_packets: list[tuple[float, bytes]] = field(default_factory=list)  # (time, packet)
    caller_packets: list[tuple[float, bytes]] = field(default_factory=list)
    dropped: int = 0
    reordered: int = 0
    _waiters: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    async def __aenter__(self) -> MediaRelay:
        loop = asyncio.get_running_loop()
        self._rng = random.Random(self.impairment.seed)
        self._callers: dict[int, tuple[str, int]] = {}
        self._held: dict[int, bytes] = {}
        self._transports: list[asyncio.DatagramTransport] = []
        for port in range(self.base, self.base + self.count):
            transport, _ = await loop.create_datagram_endpoint(
                lambda p=port: _Forwarder(self, p), local_addr=(RELAY_IP, port))  # type: ignore[misc]
            self._transports.append(transport)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in self._transports:
            transport.close()

    def _forward(self, port: int, data: bytes, addr: tuple[str, int],
                 transport: asyncio.DatagramTransport) -> None:
        now = time.monotonic()
        if addr == (GATEWAY_IP, port):  # the agent's media, back to the caller
            if port % 2 == 0:
                self.agent_packets.append((now, data))
                for count, event in self._waiters:
                    if len(self.agent_packets) >= count:
                        event.set()
            if port in self._callers:
                transport.sendto(data, self._callers[port])
            return
        self._callers[port] = addr
        audio = port % 2 == 0 and len(data) > 12 and data[1] & 0x7F == 0
        if audio:
            self.caller_packets.append((now, data))
        imp = self.impairment
        if audio and self._rng.random() < imp.loss:
            self.dropped += 1
            return
        if audio and port not in self._held and self._rng.random() < imp.reorder:
            self._held[port] = data  # sent after the next one: these two arrive swapped
            self.reordered += 1
            return
        packets = [data] + ([self._held.pop(port)] if port in self._held else [])
        for packet in packets:
            delay = self._rng.uniform(0, imp.jitter_ms) / 1000 if audio else 0.0
            if delay:
                asyncio.get_running_loop().call_later(delay, transport.sendto, packet,
                                                      (GATEWAY_IP, port))
            else:
                transport.sendto(packet, (GATEWAY_IP, port))

    async def wait_agent_audio(self, seconds: float, timeout_s: float = 120.0) -> None:
        """Until the agent has sent `seconds` of RTP audio (20 ms packets)."""
        event = asyncio.Event()
        self._waiters.append((int(seconds * 50), event))
        if len(self.agent_packets) >= int(seconds * 50):
            event.set()
        await asyncio.wait_for(event.wait(), timeout_s)

    def agent_audio(self) -> bytes:
        """The agent's RTP payloads (μ-law) decoded to PCM16 at 8 kHz, in arrival order."""
        return b"".join(ulaw_to_pcm16(p[12:]) for _, p in self.agent_packets
                        if len(p) > 12 and p[1] & 0x7F == 0)


class _Forwarder(asyncio.DatagramProtocol):
    def __init__(self, relay: MediaRelay, port: int) -> None:
        self.relay = relay
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.relay._forward(self.port, data, addr, self.transport)


def sip_request(method: str, call_id: str, body: str = "", extra: str = "",
                port: int = 5060) -> bytes:
    """A minimal request from 127.0.0.1, for raw-socket tests."""
    head = (f"{method} sip:agent@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}{method}\r\n"
            f"From: <sip:test@127.0.0.1>;tag=t1\r\nTo: <sip:agent@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n{body}")
    return head.encode()


def exchange(sock: socket.socket, data: bytes, port: int) -> str:
    """Send one request over UDP; the status line of its final response."""
    sock.sendto(data, ("127.0.0.1", port))
    while True:  # skip provisional responses
        reply = sock.recv(65536).decode(errors="replace")
        if not reply.startswith("SIP/2.0 1"):
            return reply.split("\r\n")[0]
