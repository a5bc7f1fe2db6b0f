"""The SIP/RTP edge's parsers and its message dispatch from arbitrary input: SIP messages
(datagram and stream framing), SDP offers, RTP packets into the jitter buffer, and whole
datagrams through the server's admission and dispatch. Only the documented errors come
out; what is accepted round-trips; every response the server sends is well-formed SIP."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import examples, run_bounded
from voxbus_common.config import Settings
from voxbus_gateway.sip.message import SipParseError, parse
from voxbus_gateway.sip.rtp import MAX_DEPTH, RtpError, RtpReceiver, parse_rtp
from voxbus_gateway.sip.sdp import SdpError, build_answer, parse_offer
from voxbus_gateway.sip.server import SipServer
from voxbus_gateway.sip.transport import Link

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
INVITE = (b"INVITE sip:agent@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\n"
          b"From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:agent@10.0.0.1>\r\nCall-ID: c1\r\n"
          b"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: "
          + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)
METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY", "REFER", "PRACK",
           "FOO"]


def mutate(base: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(base)
    for at, cut, insert in edits:
        at %= len(data) + 1
        data[at : at + cut] = insert
    return bytes(data)


EDITS = st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 8),
                           st.binary(max_size=8)), max_size=6)


@examples(600)
@given(st.one_of(st.binary(max_size=3000), EDITS.map(lambda e: mutate(INVITE, e))),
       st.booleans())
def test_sip_parser(data: bytes, stream: bool) -> None:
    try:
        msg, used = parse(data, stream=stream)
    except SipParseError as exc:
        assert 400 <= exc.status < 600 and str(exc)
        return
    assert 0 < used <= len(data)
    again, _ = parse(msg.to_bytes(), stream=True)
    assert (again.method, again.status, again.body) == (msg.method, msg.status, msg.body)
    assert again.call_id == msg.call_id and again.cseq == msg.cseq


@examples(500)
@given(st.one_of(st.binary(max_size=600), EDITS.map(lambda e: mutate(SDP, e))))
def test_sdp_offers(data: bytes) -> None:
    try:
        offer = parse_offer(data)
    except SdpError as exc:
        assert str(exc)
        return
    assert offer.codec in ("PCMU", "PCMA") and 0 < offer.port < 65536
    answer = parse_offer(build_answer(offer, "192.0.2.1", 20000, 1, 1))
    assert (answer.codec, answer.payload_type, answer.port) == (offer.codec,
                                                                offer.payload_type, 20000)


PACKETS = st.lists(st.tuples(st.integers(0, 0xFFFF), st.sampled_from([0, 0, 0, 101, 96]),
                             st.binary(min_size=0, max_size=200), st.booleans()), max_size=120)


@examples(300)
@given(PACKETS, st.lists(st.binary(max_size=40), max_size=10))
def test_rtp_into_the_jitter_buffer(packets: list[tuple[int, int, bytes, bool]],
                                    junk: list[bytes]) -> None:
    """Any arrival order, duplicates, wraps and junk: bounded memory, no other errors, and
    never more frames out than sequence numbers spanned."""
    rx = RtpReceiver(0, 101)
    out = 0
    for n, (seq, pt, payload, _) in enumerate(packets):
        data = (bytes([0x80, pt]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
                + b"\x00\x00\x00\x01" + payload)
        for raw in [data, *junk[n % max(1, len(junk)):][:1]]:
            try:
                frames, digits = rx.push(parse_rtp(raw), n * 0.02)
            except RtpError:
                continue
            out += len(frames)
            assert all(len(d) == 1 for d in digits)
            assert len(rx.buffer._held) <= MAX_DEPTH + 1
    out += len(rx.drain())
    assert out <= max(1, rx.received) * 101  # gaps are filled, never without bound


class RefusingGateway:
    """Admission says no: INVITEs that pass parsing and negotiation get 503, no call."""

    def refusal(self) -> str:
        return "gateway is draining; retry another replica"


MESSAGE = st.builds(
    lambda method, headers, body, edits: mutate(
        (f"{method} sip:agent@10.0.0.1 SIP/2.0\r\n".encode() + b"".join(headers)
         + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body), edits),
    st.sampled_from(METHODS),
    st.lists(st.sampled_from([
        b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx;rport\r\n", b"From: <sip:a@b>;tag=1\r\n",
        b"To: <sip:agent@10.0.0.1>\r\n", b"To: <sip:agent@10.0.0.1>;tag=zz\r\n",
        b"Call-ID: fz\r\n", b"CSeq: 1 INVITE\r\n", b"CSeq: 1 BYE\r\n", b"Require: 100rel\r\n",
        b"Content-Type: application/sdp\r\n", b"Authorization: Digest username=x\r\n",
        b"Content-Type: application/dtmf-relay\r\n"]), max_size=12),
    st.one_of(st.just(b""), st.just(SDP), st.binary(max_size=100)),
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 4), st.binary(max_size=4)),
             max_size=2))


@examples(300)
@given(st.lists(st.one_of(MESSAGE, st.binary(max_size=300)), min_size=1, max_size=6))
def test_server_dispatch(datagrams: list[bytes]) -> None:
    """Whatever arrives: no exception escapes dispatch, and every datagram we send back is a
    well-formed SIP response (never a request, never more than one per datagram plus the
    100 Trying of an INVITE)."""

    async def scenario() -> list[bytes]:
        sent: list[bytes] = []
        settings = Settings(sip_allow="*")
        server = SipServer(RefusingGateway(), settings)  # type: ignore[arg-type]
        link = Link("udp", ("10.0.0.9", 5060), ("10.0.0.1", 5060),
                    lambda data, to: sent.append(data))
        for data in datagrams:
            server._deliver(data, link)  # not deliver(): its safety net would hide bugs
        tasks: Any = list(server._tasks)
        if tasks:
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert not [e for e in done if isinstance(e, BaseException)], done
        return sent

    for reply in run_bounded(scenario()):
        msg, _ = parse(reply)
        assert msg.status >= 100 and not msg.is_request
