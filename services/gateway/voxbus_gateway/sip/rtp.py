"""RTP (RFC 3550) for G.711 at 8 kHz: packets, the receive side (adaptive jitter buffer,
packet-loss concealment, RFC 4733 DTMF) and the send side's header state. No I/O here:
media.py owns the sockets, so all of this is unit-testable with plain bytes."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from voxbus_gateway.edges.jitter import ReorderBuffer, SeqUnwrap

CLOCK = 8000
SAMPLES = 160  # 20 ms
MAX_PACKET = 1500  # anything larger is not one of our 20 ms frames (dropped)
DTMF_EVENTS = "0123456789*#ABCD"
MIN_DEPTH, MAX_DEPTH = 2, 10  # jitter buffer depth bounds, in 20 ms frames


class RtpError(ValueError):
    """A datagram that is not a usable RTP packet (dropped and counted)."""


@dataclass
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        first = 0x80
        second = (0x80 if self.marker else 0) | self.payload_type
        return struct.pack("!BBHII", first, second, self.seq & 0xFFFF,
                           self.timestamp & 0xFFFFFFFF, self.ssrc) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < 12:
        raise RtpError("shorter than an RTP header")
    if len(data) > MAX_PACKET:
        raise RtpError(f"{len(data)}-byte packet")
    first, second, seq, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
    if first >> 6 != 2:
        raise RtpError("not RTP version 2")
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4-byte header + length words
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
    end = len(data)
    if first & 0x20:  # padding: the last byte says how much
        end -= data[-1]
    if offset > end or end > len(data):
        raise RtpError("bad header or padding length")
    pt = second & 0x7F
    if 72 <= pt <= 76:
        raise RtpError("RTCP on the RTP port")
    return RtpPacket(pt, seq, timestamp, ssrc, data[offset:end], bool(second & 0x80))


def parse_dtmf(payload: bytes) -> tuple[str, bool] | None:
    """(digit, end-of-event) of an RFC 4733 telephone-event payload, None if not a digit."""
    if len(payload) < 4 or payload[0] >= len(DTMF_EVENTS):
        return None
    return DTMF_EVENTS[payload[0]], bool(payload[1] & 0x80)


class RtpReceiver:
    """One call's inbound stream: packets in, 20 ms G.711 frames (in order, losses
    concealed) and DTMF digits out. The buffer depth follows the measured interarrival
    jitter (RFC 3550 §6.4.1): a clean LAN call waits 40 ms, a jittery one up to 200 ms."""

    def __init__(self, payload_type: int, dtmf_type: int | None) -> None:
        self.payload_type = payload_type
        self.dtmf_type = dtmf_type
        self.buffer = ReorderBuffer(depth=MIN_DEPTH, max_gap=100)
        self._unwrap = SeqUnwrap()
        self._ssrc: int | None = None
        self._last_transit: float | None = None
        self.jitter_s = 0.0
        self._dtmf_seen: set[int] = set()
        self.received = 0
        self.unknown_type = 0
        self.highest_seq = 0

    def push(self, packet: RtpPacket, arrival_s: float) -> tuple[list[bytes], list[str]]:
        """(frames, digits) released by this packet; a lost frame is b"" (conceal it)."""
        if self.dtmf_type is not None and packet.payload_type == self.dtmf_type:
            return [], self._dtmf(packet)
        if packet.payload_type != self.payload_type:
            self.unknown_type += 1
            return [], []
        frames: list[bytes] = []
        if packet.ssrc != self._ssrc:  # a new source (a re-INVITE, a PBX switching legs)
            frames = self.buffer.drain(b"") if self._ssrc is not None else []
            self._ssrc, self._unwrap, self._last_transit = packet.ssrc, SeqUnwrap(), None
            self.buffer = ReorderBuffer(depth=self.buffer.depth, max_gap=100)
        self.received += 1
        self._track_jitter(packet.timestamp, arrival_s)
        seq = self._unwrap(packet.seq)
        self.highest_seq = max(self.highest_seq, seq)
        if not packet.payload:
            return frames, []
        frames += self.buffer.push(seq, packet.payload, b"")  # any ptime: one packet, one unit
        return frames, []

    def drain(self) -> list[bytes]:
        return self.buffer.drain(b"")

    def _track_jitter(self, timestamp: int, arrival_s: float) -> None:
        transit = arrival_s - timestamp / CLOCK
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d < 1.0:  # a talk-spurt gap or a timestamp jump is not jitter
                self.jitter_s += (d - self.jitter_s) / 16
        self._last_transit = transit
        want = round(3 * self.jitter_s / 0.02) + MIN_DEPTH
        self.buffer.depth = min(MAX_DEPTH, max(MIN_DEPTH, want))

    def _dtmf(self, packet: RtpPacket) -> list[str]:
        parsed = parse_dtmf(packet.payload)
        if parsed is None or packet.timestamp in self._dtmf_seen:
            return []
        self._dtmf_seen.add(packet.timestamp)  # one event = one timestamp, sent many times
        if len(self._dtmf_seen) > 256:
            self._dtmf_seen = {packet.timestamp}
        return [parsed[0]]


class Concealer:
    """Packet-loss concealment on decoded PCM16: a lost frame repeats the last good one at
    half, then a quarter of its level, then silence (G.711 Appendix I in spirit, simpler)."""

    def __init__(self, frame_bytes: int) -> None:
        self._last = b"\x00" * frame_bytes
        self._run = 0
        self.concealed = 0

    def __call__(self, pcm: bytes | None) -> bytes:
        if pcm is not None:
            self._last, self._run = pcm, 0
            return pcm
        self._run += 1
        self.concealed += 1
        if self._run > 2:
            return b"\x00" * len(self._last)
        shift = self._run
        samples = struct.unpack(f"<{len(self._last) // 2}h", self._last)
        return struct.pack(f"<{len(samples)}h", *(s >> shift for s in samples))


class RtpSender:
    """Header state of our outbound stream: random SSRC, sequence and timestamp origin
    (RFC 3550 §5.1), marker on the first packet after a pause, timestamps on the RTP clock
    even across pauses (they advance with the wall clock), counters for RTCP."""

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.packets = 0
        self.octets = 0

    def packet(self, payload: bytes, marker: bool, skipped_samples: int = 0) -> bytes:
        self.timestamp = (self.timestamp + skipped_samples) & 0xFFFFFFFF
        data = RtpPacket(self.payload_type, self.seq, self.timestamp, self.ssrc, payload,
                         marker).to_bytes()
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        return data
