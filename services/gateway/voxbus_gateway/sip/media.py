"""One call's RTP/RTCP sockets: symmetric RTP (we answer where the peer's packets come
from, for NAT), inbound through the jitter buffer and concealment to bus-rate PCM, outbound
paced on the RTP clock from a buffer that barge-in empties, RTCP sender reports, SRTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from typing import Any

from voxbus_gateway.edges.transcode import Transcoder
from voxbus_gateway.sip.rtp import (
    SAMPLES,
    Concealer,
    RtpError,
    RtpReceiver,
    RtpSender,
    parse_rtp,
)
from voxbus_gateway.sip.sdp import Offer
from voxbus_gateway.sip.srtp import SrtpContext, SrtpError

log = logging.getLogger(__name__)

Addr = tuple[str, int]
RTCP_INTERVAL_S = 5.0
NTP_EPOCH_OFFSET = 2208988800
IDLE_DRAIN_S = 0.06  # no packet for this long (at least): silence fills the gap
LEARN_PACKETS = 4  # packets in sequence before an unexpected source is believed
MAX_OUT_BUFFER = 8000 * 30  # 30 s of agent audio waiting to be paced out


class PortPool:
    """Even RTP ports (RTCP on the next odd one) within the configured range."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low + low % 2, high
        self.in_use: set[int] = set()
        self._next = self.low

    def candidates(self) -> list[int]:
        ports = list(range(self.low, self.high, 2))
        start = (self._next - self.low) // 2
        return [p for p in ports[start:] + ports[:start] if p not in self.in_use]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        log.debug("rtp socket error: %s", exc)


class MediaSession:
    def __init__(self, bus_rate: int, pool: PortPool, call_id: str = "-") -> None:
        self.call_id = call_id  # for logs from socket callbacks (no call context there)
        self.bus_rate = bus_rate
        self.pool = pool
        self.port = 0
        self.inbound: asyncio.Queue[tuple[str, bytes | str]] = asyncio.Queue(maxsize=500)
        self._rtp: _Socket | None = None
        self._rtcp: _Socket | None = None
        self.remote: Addr | None = None
        self.remote_rtcp: Addr | None = None
        self.latched = False
        self.dropped = {"malformed": 0, "foreign": 0, "srtp": 0, "overflow": 0}
        self._out = bytearray()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.srtp: SrtpContext | None = None
        self.sending = True
        self._last_arrival = 0.0
        self._filled_until = 0.0  # silence we made up covers the gap until here
        self.rtcp_received = 0
        self.trusted_ips: set[str] = set()
        self._candidates: dict[Addr, tuple[int, int]] = {}  # source -> (last seq, run)

    async def open(self, host: str) -> int:
        """Bind an RTP/RTCP port pair from the pool; returns the RTP port."""
        loop = asyncio.get_running_loop()
        for port in self.pool.candidates():
            try:
                _, rtp = await loop.create_datagram_endpoint(
                    lambda: _Socket(self._on_rtp), local_addr=(host, port))
            except OSError:
                continue
            try:
                _, rtcp = await loop.create_datagram_endpoint(
                    lambda: _Socket(self._on_rtcp), local_addr=(host, port + 1))
            except OSError:
                assert rtp.transport is not None
                rtp.transport.close()
                continue
            self._rtp, self._rtcp, self.port = rtp, rtcp, port
            self.pool.in_use.add(port)
            self.pool._next = port + 2
            return port
        raise OSError("no free RTP port pair in the configured range")

    def configure(self, offer: Offer, srtp: SrtpContext | None, signalling_ip: str) -> None:
        """Apply an offer (the first INVITE's or a re-INVITE's)."""
        if self.remote is None or not self.latched or offer.address != self.remote[0]:
            self.remote = (offer.address, offer.port)
            self.remote_rtcp = (offer.address, offer.port + 1)
            self.latched = False
        self.trusted_ips = {offer.address, signalling_ip}
        self.receiver = RtpReceiver(offer.payload_type, offer.dtmf_type)
        self.sender = getattr(self, "sender", None) or RtpSender(offer.payload_type)
        self.sender.payload_type = offer.payload_type
        self.concealer = Concealer(SAMPLES * 2)
        self.transcoder = Transcoder("mulaw" if offer.codec == "PCMU" else "alaw", 8000,
                                     self.bus_rate)
        self.srtp = srtp
        self.sending = not offer.on_hold

    def start(self) -> None:
        self._last_arrival = time.monotonic()  # the gap before the first packet is silence
        self._tasks = [asyncio.create_task(self._pace()), asyncio.create_task(self._reports())]

    # -- inbound --------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: Addr) -> None:
        if self.latched and addr != self.remote:
            self.dropped["foreign"] += 1  # not the source we latched on: injected or a flood
            return
        try:
            if self.srtp is not None:
                data = self.srtp.unprotect(data)
            packet = parse_rtp(data)
        except SrtpError:
            self.dropped["srtp"] += 1
            return
        except RtpError:
            self.dropped["malformed"] += 1
            return
        if not hasattr(self, "receiver"):
            return
        if not self.latched and not self._learn(addr, packet.seq):
            self.dropped["foreign"] += 1
            return
        self._last_arrival = time.monotonic()
        frames, digits = self.receiver.push(packet, self._last_arrival)
        self._deliver(frames)
        for digit in digits:
            self._put(("dtmf", digit))

    def _learn(self, addr: Addr, seq: int) -> bool:
        """Symmetric RTP: we answer where the media really comes from (NAT). A source on
        the SDP's or the SIP peer's address is taken at once; any other (a NAT's public
        side) only after LEARN_PACKETS packets in sequence, so a stranger spraying one
        forged packet cannot take the call's media (Asterisk's strictrtp, in spirit)."""
        if addr[0] not in self.trusted_ips:
            last_seq, count = self._candidates.get(addr, (-1, 0))
            count = count + 1 if seq == (last_seq + 1) & 0xFFFF else 1
            if len(self._candidates) >= 64:
                self._candidates.clear()  # a spray from many ports: start learning over
            self._candidates[addr] = (seq, count)
            if count < LEARN_PACKETS:
                return False
        self.remote, self.remote_rtcp, self.latched = addr, (addr[0], addr[1] + 1), True
        log.info("RTP source latched", extra={"source": f"{addr[0]}:{addr[1]}",
                                              "call_id": self.call_id})
        return True

    def _deliver(self, frames: list[bytes]) -> None:
        for payload in frames:
            pcm = self.concealer(self.transcoder.decode(payload) if payload else None)
            self._put(("audio", self.transcoder.pcm_to_bus(pcm)))

    def _put(self, item: tuple[str, bytes | str]) -> None:
        try:
            self.inbound.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped["overflow"] += 1  # the call loop is stuck: shed, never grow

    async def next_item(self) -> tuple[str, bytes | str]:
        """The next decoded frame or DTMF digit. When packets stop (silence suppression,
        a caller on hold, the end of a stream) for longer than the jitter buffer would wait,
        what it holds is released and silence keeps flowing in real time: the endpointer
        needs to hear the pause to end the turn."""
        while True:
            if not self.inbound.empty():  # the common case: no timer per frame
                return self.inbound.get_nowait()
            idle_s = max(IDLE_DRAIN_S, (self.receiver.buffer.depth + 1) * 0.02) \
                if self._tasks else 1.0
            try:
                return await asyncio.wait_for(self.inbound.get(), idle_s)
            except TimeoutError:
                now = time.monotonic()
                if not self._tasks or now - self._last_arrival < idle_s:
                    continue
                self._deliver(self.receiver.drain())
                since = max(self._last_arrival, self._filled_until)
                frames = min(int((now - since) / 0.02), 50)  # a stalled loop: 1 s at most
                if frames > 0:
                    self._filled_until = since + frames * 0.02
                    quiet = b"\x00" * (SAMPLES * 2 * frames)
                    self._put(("audio", self.transcoder.pcm_to_bus(quiet)))

    def _on_rtcp(self, data: bytes, addr: Addr) -> None:
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect_rtcp(data)
            except SrtpError:
                self.dropped["srtp"] += 1
                return
        if len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 204:
            self.rtcp_received += 1
            self.remote_rtcp = addr  # symmetric RTCP as well
        else:
            self.dropped["malformed"] += 1

    # -- outbound -------------------------------------------------------------------------------

    def send(self, pcm16_bus: bytes) -> None:
        """Queue agent audio; the pacer sends it on the RTP clock."""
        if not self.sending:
            return  # on hold: the peer does not want media
        encoded = self.transcoder.from_bus(pcm16_bus)
        if len(self._out) < MAX_OUT_BUFFER:
            self._out.extend(encoded)
        self._wake.set()

    def clear(self) -> None:
        """Barge-in: what the caller has not heard yet is dropped at once."""
        self._out.clear()

    @property
    def buffered_ms(self) -> int:
        return len(self._out) // 8

    async def _pace(self) -> None:
        """One packet per 20 ms on the RTP clock; a pause in speech is a gap in time, so
        the next talk spurt starts with the marker bit and a timestamp jump (RFC 3551 §4.1)."""
        next_due, last_sent = 0.0, 0.0
        while True:
            if len(self._out) < SAMPLES:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            marker = now - next_due > 0.06  # idle longer than a few frames: a new talk spurt
            skipped = 0
            if marker:
                if last_sent:  # the RTP clock ran on while we were silent
                    skipped = max(0, int((now - last_sent) * 8000) // SAMPLES - 1) * SAMPLES
                next_due = now
            payload = bytes(self._out[:SAMPLES])
            del self._out[:SAMPLES]
            self._transmit(self.sender.packet(payload, marker, skipped))
            last_sent = now
            next_due += 0.02
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))

    def _transmit(self, packet: bytes) -> None:
        if self._rtp is None or self._rtp.transport is None or self.remote is None:
            return
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        self._rtp.transport.sendto(packet, self.remote)

    async def _reports(self) -> None:
        """An RTCP sender report every few seconds (RFC 3550 §6.4.1)."""
        while True:
            await asyncio.sleep(RTCP_INTERVAL_S)
            if self._rtcp is None or self._rtcp.transport is None or not self.remote_rtcp:
                continue
            report = self.sender_report()
            if self.srtp is not None:
                report = self.srtp.protect_rtcp(report)
            self._rtcp.transport.sendto(report, self.remote_rtcp)

    def sender_report(self) -> bytes:
        now = time.time() + NTP_EPOCH_OFFSET
        ntp_hi, ntp_lo = int(now), int((now % 1) * (1 << 32))
        s = self.sender
        return struct.pack("!BBHIIIIII", 0x80, 200, 6, s.ssrc, ntp_hi, ntp_lo, s.timestamp,
                           s.packets, s.octets)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
        self.pool.in_use.discard(self.port)
