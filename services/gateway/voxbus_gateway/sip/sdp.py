"""SDP offer/answer (RFC 3264/4566) for one audio stream: G.711 μ-law or A-law at 8 kHz,
RFC 4733 telephone-events, direction (hold), and SDES crypto (RFC 4568) for SRTP."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

CODECS = {"PCMU": 0, "PCMA": 8}  # what we speak, in our order of preference among equals
SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                    "inactive": "inactive"}
MAX_SDP = 8192


class SdpError(ValueError):
    """An offer we cannot accept (answered 488 Not Acceptable Here)."""


@dataclass
class Crypto:
    tag: str
    suite: str
    key_b64: str  # inline key||salt, base64


@dataclass
class Offer:
    address: str
    port: int
    codec: str  # PCMU | PCMA
    payload_type: int
    dtmf_type: int | None  # telephone-event payload type, when offered at 8 kHz
    direction: str
    secure: bool  # RTP/SAVP
    crypto: list[Crypto] = field(default_factory=list)
    media_lines: list[str] = field(default_factory=list)  # every m= line, to answer in order
    audio_index: int = 0

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.address in ("0.0.0.0", "::")


def parse_offer(body: bytes) -> Offer:
    """The first usable audio stream of an SDP offer, or SdpError saying why none is."""
    if len(body) > MAX_SDP:
        raise SdpError("SDP too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session_addr, session_dir = "", "sendrecv"
    media: list[list[str]] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:40]!r}")
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        elif line.startswith("c="):
            session_addr = _connection(line)
        elif line[2:] in ANSWER_DIRECTION:
            session_dir = line[2:]
    for index, block in enumerate(media):
        offer = _audio(block, session_addr, session_dir)
        if offer is not None:
            offer.media_lines = [b[0] for b in media]
            offer.audio_index = index
            return offer
    raise SdpError("no audio stream with PCMU or PCMA at 8000 Hz offered")


def _connection(line: str) -> str:
    parts = line[2:].split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad connection line {line[:40]!r}")
    address = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"connection address {address[:40]!r} is not an IP address") from None
    return address


def _audio(block: list[str], session_addr: str, session_dir: str) -> Offer | None:
    parts = block[0][2:].split()
    if len(parts) < 4 or parts[0] != "audio" or parts[2] not in ("RTP/AVP", "RTP/SAVP"):
        return None
    if not parts[1].isdigit() or not 0 < int(parts[1]) < 65536:
        return None  # port 0: a declined stream
    formats = [int(p) for p in parts[3:] if p.isdigit() and int(p) < 128]
    names: dict[int, str] = {0: "PCMU/8000", 8: "PCMA/8000"}
    address, direction, crypto = session_addr, session_dir, []
    for line in block[1:]:
        if line.startswith("c="):
            address = _connection(line)
        elif line.startswith("a=rtpmap:"):
            pt, _, name = line[9:].partition(" ")
            if pt.isdigit():
                names[int(pt)] = name.strip()
        elif line[2:] in ANSWER_DIRECTION:
            direction = line[2:]
        elif line.startswith("a=crypto:"):
            fields = line[9:].split()
            if len(fields) >= 3 and fields[1] in SUITES and fields[2].startswith("inline:"):
                key = fields[2][7:].split("|")[0]
                crypto.append(Crypto(fields[0], fields[1], key))
    if not address:
        raise SdpError("no connection address for the audio stream")
    codec = next(((n.split("/")[0].upper(), pt) for pt in formats
                  if (n := names.get(pt, "")).upper() in ("PCMU/8000", "PCMA/8000")), None)
    if codec is None:
        return None
    dtmf = next((pt for pt in formats
                 if names.get(pt, "").lower() == "telephone-event/8000"), None)
    return Offer(address=address, port=int(parts[1]), codec=codec[0], payload_type=codec[1],
                 dtmf_type=dtmf, direction=direction, secure=parts[2] == "RTP/SAVP",
                 crypto=crypto)


def build_answer(offer: Offer, address: str, port: int, session_id: int, version: int,
                 crypto: Crypto | None = None, direction: str | None = None) -> bytes:
    """Our answer: the offer's codec and DTMF type, the mirrored direction, our crypto."""
    family = "IP6" if ":" in address else "IP4"
    formats = [str(offer.payload_type)] + ([str(offer.dtmf_type)] if offer.dtmf_type else [])
    lines = ["v=0", f"o=voxbus {session_id} {version} IN {family} {address}", "s=voxbus",
             f"c=IN {family} {address}", "t=0 0"]
    for index, m_line in enumerate(offer.media_lines):
        if index != offer.audio_index:
            p = [*m_line[2:].split(), "x", "x", "RTP/AVP", "0"]
            lines.append(f"m={p[0]} 0 {p[2]} {p[3]}")  # declined (RFC 3264 §6)
            continue
        proto = "RTP/SAVP" if crypto else "RTP/AVP"
        lines.append(f"m=audio {port} {proto} {' '.join(formats)}")
        lines.append(f"a=rtpmap:{offer.payload_type} {offer.codec}/8000")
        if offer.dtmf_type:
            lines += [f"a=rtpmap:{offer.dtmf_type} telephone-event/8000",
                      f"a=fmtp:{offer.dtmf_type} 0-15"]
        lines.append("a=ptime:20")
        if crypto:
            lines.append(f"a=crypto:{crypto.tag} {crypto.suite} inline:{crypto.key_b64}")
        lines.append(f"a={direction or ANSWER_DIRECTION[offer.direction]}")
    return ("\r\n".join(lines) + "\r\n").encode()
