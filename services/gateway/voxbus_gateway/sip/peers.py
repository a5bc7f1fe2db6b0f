"""Who may send us SIP, how much, and how a refused message is answered: the checks that
run before a message is parsed, so a flood from an unlisted address costs almost nothing."""

from __future__ import annotations

import ipaddress
import socket
import time

from voxbus_gateway.sip.dialog import response
from voxbus_gateway.sip.message import COMPACT, SipMessage
from voxbus_gateway.sip.transport import Link

RATE_PER_S, BURST = 200.0, 400.0  # SIP messages per peer address
FORBIDDEN_EVERY_S = 10.0  # an unlisted peer hears one 403 per this long, then nothing
MAX_TRACKED = 10000  # peer addresses remembered for rate limits (then forgotten at once)


def parse_allow(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """`10.0.0.0/8,192.0.2.7` -> networks; "*" -> None (anyone)."""
    if spec.strip() == "*":
        return None
    return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]


def local_ip_toward(peer_ip: str) -> str:
    """The address of our interface that routes to `peer_ip` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((peer_ip, 9))
        return str(s.getsockname()[0])


class PeerGate:
    def __init__(self, allow_spec: str) -> None:
        self.allow = parse_allow(allow_spec)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._forbidden_at: dict[str, float] = {}

    def allowed(self, ip: str) -> bool:
        if self.allow is None:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.allow)

    def should_answer_forbidden(self, ip: str) -> bool:
        now = time.monotonic()
        if now - self._forbidden_at.get(ip, -60.0) < FORBIDDEN_EVERY_S:
            return False
        if len(self._forbidden_at) >= MAX_TRACKED:
            self._forbidden_at.clear()
        self._forbidden_at[ip] = now
        return True

    def rate_ok(self, ip: str) -> bool:
        """A token bucket per source address."""
        now = time.monotonic()
        tokens, last = self._buckets.get(ip, (BURST, now))
        tokens = min(BURST, tokens + (now - last) * RATE_PER_S)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.clear()
        self._buckets[ip] = (tokens - 1, now)
        return tokens >= 1


def answer_refused(data: bytes, link: Link, status: int, why: str) -> None:
    """Answer a message we refuse, if it is a request that carries enough (Via, From, To,
    Call-ID, CSeq) to address a response; anything else is dropped silently."""
    if data.startswith(b"SIP/2.0") or data.startswith(b"ACK "):
        return
    lenient = SipMessage(method="X")
    for line in data[:8192].decode("utf-8", "replace").split("\r\n")[1:60]:
        name, sep, value = line.partition(":")
        name = COMPACT.get(name.strip().lower(), name.strip().lower())
        if sep and name in ("via", "from", "to", "call-id", "cseq"):
            lenient.headers.append((name, value.strip()))
    if all(lenient.get(h) for h in ("via", "from", "to", "call-id", "cseq")):
        reason = "".join(c for c in why if c.isprintable())[:80]
        link.send(response(lenient, status, link, reason=f"Bad Request ({reason})"
                           if status == 400 else reason).to_bytes())
