"""The SIP/RTP edge's pure parts: message parser, SDP, digest, RTP receive and send, SRTP."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

import pytest

from voxbus_gateway.edges.jitter import SeqUnwrap
from voxbus_gateway.sip.digest import DigestAuth
from voxbus_gateway.sip.media import MediaSession, PortPool
from voxbus_gateway.sip.message import SipParseError, parse, user_of
from voxbus_gateway.sip.rtp import (
    Concealer,
    RtpError,
    RtpPacket,
    RtpReceiver,
    RtpSender,
    parse_rtp,
)
from voxbus_gateway.sip.sdp import Crypto, SdpError, build_answer, parse_offer
from voxbus_gateway.sip.srtp import SrtpContext, SrtpError

INVITE = (b"INVITE sip:agent@10.0.0.1 SIP/2.0\r\n"
          b"v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKabc;rport\r\n"
          b"f: \"Alice\" <sip:+15551234@10.0.0.2>;tag=a1\r\n"
          b"t: <sip:agent@10.0.0.1>\r\n"
          b"i: call-1@10.0.0.2\r\n"
          b"CSeq: 1 INVITE\r\n"
          b"Subject: a folded\r\n header\r\n"
          b"c: application/sdp\r\n")
SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
       b"m=video 5004 RTP/AVP 96\r\n"
       b"m=audio 4000 RTP/AVP 18 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=sendonly\r\n")


def invite(body: bytes = SDP) -> bytes:
    return INVITE + b"l: %d\r\n\r\n" % len(body) + body


def test_parse_expands_compact_headers_and_folding() -> None:
    msg, used = parse(invite())
    assert used == len(invite())
    assert msg.method == "INVITE" and msg.call_id == "call-1@10.0.0.2"
    assert msg.cseq == (1, "INVITE") and msg.branch == "z9hG4bKabc"
    assert msg.get("subject") == "a folded header"
    assert user_of(msg.get("from")) == "+15551234"
    assert msg.body == SDP
    again, _ = parse(msg.to_bytes())
    assert again.headers == msg.headers and again.body == msg.body


@pytest.mark.parametrize(("data", "why"), [
    (invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "does not match"),
    (invite().replace(b"i: call-1@10.0.0.2\r\n", b""), "missing Call-ID"),
    (invite().replace(b"l: ", b"l: 9"), "Content-Length"),
    (invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), "request line"),
    (INVITE + b"X: y\r\n" * 100 + b"\r\n", "too many headers"),
    (b"INVITE sip:a SIP/2.0\r\n", "blank line"),
])
def test_parse_refuses_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(SipParseError, match=why):
        parse(data)


def test_oversized_datagram_is_513() -> None:
    with pytest.raises(SipParseError) as exc:
        parse(invite(b"v=0\r\n" + b"a=x\r\n" * 4000))
    assert exc.value.status == 513


def test_offer_picks_the_first_g711_and_mirrors_direction() -> None:
    offer = parse_offer(SDP)
    assert (offer.codec, offer.payload_type, offer.dtmf_type) == ("PCMA", 8, 101)
    assert offer.address == "10.0.0.2" and offer.port == 4000 and offer.on_hold
    answer = build_answer(offer, "192.0.2.1", 20000, 7, 1).decode()
    assert "m=video 0 RTP/AVP 96" in answer  # declined, in place
    assert "m=audio 20000 RTP/AVP 8 101" in answer and "a=recvonly" in answer
    assert "c=IN IP4 192.0.2.1" in answer


@pytest.mark.parametrize("sdp", [
    b"", b"v=1\r\n", b"v=0\r\nc=IN IP4 host.example\r\nm=audio 1 RTP/AVP 0\r\n",
    b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 1 RTP/AVP 9\r\n",  # G.722 only
    b"v=0\r\nm=audio 1 RTP/AVP 0\r\n",  # no address
    b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n",  # declined stream
    b"v=0\r\ngarbage\r\n", b"\xff\xfe",
])
def test_unusable_offers_are_refused(sdp: bytes) -> None:
    with pytest.raises(SdpError):
        parse_offer(sdp)


def digest_response(auth: DigestAuth, challenge: str, password: str) -> str:
    nonce = challenge.split('nonce="')[1].split('"')[0]
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = md5(f"trunk:{auth.realm}:{password}"), md5("INVITE:sip:agent@10.0.0.1")
    response = md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
    return (f'Digest username="trunk", realm="{auth.realm}", nonce="{nonce}", '
            f'uri="sip:agent@10.0.0.1", response="{response}", qop=auth, nc=00000001, '
            'cnonce="c0ffee", algorithm=MD5')


def test_digest_accepts_the_right_password_only() -> None:
    auth = DigestAuth("trunk", "s3cret", "voxbus")
    challenge = auth.challenge()
    assert auth.check(digest_response(auth, challenge, "s3cret"), "INVITE")
    assert not auth.check(digest_response(auth, challenge, "guess"), "INVITE")
    assert not auth.check(digest_response(auth, challenge, "s3cret"), "BYE")
    forged = digest_response(auth, challenge.replace('nonce="', 'nonce="1'), "s3cret")
    assert not auth.check(forged, "INVITE")  # a nonce we did not sign
    assert not auth.check("Basic dHJ1bms6czNjcmV0", "INVITE")


def packet(seq: int, payload: bytes = b"\xff" * 160, pt: int = 0, ts: int | None = None,
           ssrc: int = 1) -> RtpPacket:
    return RtpPacket(pt, seq & 0xFFFF, (seq * 160 if ts is None else ts) & 0xFFFFFFFF, ssrc,
                     payload)


def test_sequence_wrap_is_not_a_reset() -> None:
    unwrap = SeqUnwrap()
    assert [unwrap(s) for s in (65534, 65535, 0, 65533, 1)] == [65534, 65535, 65536, 65533,
                                                                65537]
    rx = RtpReceiver(0, 101)
    frames: list[bytes] = []
    for seq in (65533, 65534, 0, 65535, 1, 2, 3, 4):  # a wrap with one reordered packet
        frames += rx.push(packet(seq, bytes([seq & 0xFF]) * 160), 0.0)[0]
    frames += rx.drain()
    assert [f[0] for f in frames] == [s & 0xFF for s in (65533, 65534, 65535, 0, 1, 2, 3, 4)]


def test_lost_packets_are_marked_for_concealment_and_dtmf_is_deduplicated() -> None:
    rx = RtpReceiver(0, 101)
    out: list[bytes] = []
    digits: list[str] = []
    for seq in [1, 2, 4, 5, 6, 7, 8, 9]:
        frames, _ = rx.push(packet(seq), seq * 0.02)
        out += frames
    for _ in range(3):  # one RFC 4733 event, repeated (the end packets three times)
        digits += rx.push(packet(10, bytes([5, 0x8A, 0, 160]), pt=101, ts=999), 0.2)[1]
    assert out.count(b"") == 1 and len(out) + len(rx.drain()) == 9
    assert digits == ["5"]
    rx.push(packet(11, pt=96), 0.2)
    assert rx.unknown_type == 1


def test_jitter_buffer_deepens_with_jitter() -> None:
    calm, jittery = RtpReceiver(0, None), RtpReceiver(0, None)
    for seq in range(200):
        calm.push(packet(seq), seq * 0.02)
        jittery.push(packet(seq), seq * 0.02 + (0.06 if seq % 2 else 0.0))
    assert calm.buffer.depth == 2 and jittery.buffer.depth > 4


@pytest.mark.parametrize("data", [
    b"\x80\x00", b"\x40" + b"\x00" * 20, b"\x80\xc8" + b"\x00" * 30,  # short, v1, RTCP
    b"\xa0\x00" + b"\x00" * 10 + b"\xff",  # padding longer than the packet
    b"\x90\x00" + b"\x00" * 10 + b"\x00\x00\x00\x09",  # extension past the end
    b"\x80\x00" + b"\x00" * 1600,  # oversized
])
def test_bad_rtp_is_refused(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_concealment_fades_then_goes_silent() -> None:
    conceal = Concealer(320)
    loud = struct.pack("<160h", *([8000] * 160))
    assert conceal(loud) == loud
    first, second, third = conceal(None), conceal(None), conceal(None)
    assert struct.unpack("<h", first[:2])[0] == 4000
    assert struct.unpack("<h", second[:2])[0] == 2000
    assert third == b"\x00" * 320 and conceal.concealed == 3


def test_sender_keeps_the_rtp_clock_across_pauses() -> None:
    sender = RtpSender(0)
    first = parse_rtp(sender.packet(b"\xff" * 160, marker=True))
    second = parse_rtp(sender.packet(b"\xff" * 160, marker=False))
    after_pause = parse_rtp(sender.packet(b"\xff" * 160, marker=True, skipped_samples=800))
    assert (second.timestamp - first.timestamp) % 2**32 == 160
    assert (after_pause.timestamp - second.timestamp) % 2**32 == 960 and after_pause.marker
    assert (after_pause.seq - first.seq) % 65536 == 2


def test_srtp_round_trip_and_tamper_detection() -> None:
    caller_key = base64.b64encode(os.urandom(30)).decode()
    ours = SrtpContext(Crypto("1", "AES_CM_128_HMAC_SHA1_80", caller_key))
    caller = SrtpContext(ours.ours)  # the caller decrypts with the key in our answer
    rtp = packet(7).to_bytes()
    protected = ours.protect(rtp)
    assert protected != rtp and caller.unprotect(protected) == rtp
    tampered = protected[:20] + bytes([protected[20] ^ 1]) + protected[21:]
    with pytest.raises(SrtpError):
        SrtpContext(ours.ours).unprotect(tampered)
    with pytest.raises(SrtpError):
        SrtpContext(Crypto("1", "AES_CM_128_HMAC_SHA1_80", "c2hvcnQ="))


def media_session() -> MediaSession:
    media = MediaSession(16000, PortPool(20000, 20010), "unit")
    media.configure(parse_offer(SDP.replace(b"a=sendonly", b"a=sendrecv")), None, "10.0.0.2")
    return media


def test_rtcp_sender_report_counts_what_was_sent() -> None:
    media = media_session()
    for _ in range(3):
        media.sender.packet(b"\xd5" * 160, marker=False)
    report = media.sender_report()
    assert report[0] == 0x80 and report[1] == 200 and struct.unpack("!H", report[2:4])[0] == 6
    assert len(report) == 4 * (6 + 1)
    assert struct.unpack("!II", report[20:28]) == (3, 480)


def test_media_latches_only_on_a_believable_source() -> None:
    """The signalled address is believed at once; a stranger's forged packets never are,
    a NAT's public side is after four packets in sequence."""
    media = media_session()
    stranger, nat = ("203.0.113.9", 4000), ("198.51.100.7", 31000)
    for _ in range(10):
        media._on_rtp(packet(1, pt=8).to_bytes(), stranger)  # the same forged packet
    assert not media.latched
    for seq in range(1, 5):
        media._on_rtp(packet(seq, pt=8).to_bytes(), nat)
    assert media.latched and media.remote == nat
    media._on_rtp(packet(5, pt=8).to_bytes(), stranger)
    assert media.dropped["foreign"] >= 11
    trusted = media_session()
    trusted._on_rtp(packet(1, pt=8).to_bytes(), ("10.0.0.2", 4000))
    assert trusted.latched and trusted.remote == ("10.0.0.2", 4000)
