"""A SIP dialog as the UAS sees it (RFC 3261 §12), and how its messages are built: responses
that mirror the request's Via/From/To/Call-ID/CSeq, and our in-dialog requests (BYE, REFER)
addressed to the peer's Contact through its Record-Route set."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from voxbus_gateway.sip.media import MediaSession
from voxbus_gateway.sip.message import SipMessage, param, uri_of
from voxbus_gateway.sip.sdp import Offer
from voxbus_gateway.sip.transport import Link

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY"
USER_AGENT = "voxbus"


def warning(text: str) -> tuple[str, str]:
    """A Warning header (RFC 3261 §20.43) whose text cannot break out of its quotes or
    line: reasons may quote what a peer, a tool or an operator sent."""
    clean = "".join(c for c in text if c.isprintable() and c not in '"\\')[:100]
    return ("warning", f'399 voxbus "{clean}"')


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def response(request: SipMessage, status: int, link: Link, reason: str = "",
             to_tag: str = "", body: bytes = b"", content_type: str = "") -> SipMessage:
    """A response to `request` (§8.2.6): Vias (the top one marked with where it really came
    from, RFC 3581), From, To (+ our tag), Call-ID and CSeq copied."""
    msg = SipMessage(status=status, reason=reason)
    for index, via in enumerate(request.get_all("via")):
        if index == 0:
            if ";rport" in via and "rport=" not in via:
                via = via.replace(";rport", f";rport={link.peer[1]}", 1)
            if "received=" not in via:
                via += f";received={link.peer[0]}"
        msg.headers.append(("via", via))
    to = request.get("to")
    if to_tag and not param(to, "tag"):
        to += f";tag={to_tag}"
    msg.headers += [("from", request.get("from")), ("to", to),
                    ("call-id", request.call_id), ("cseq", request.get("cseq")),
                    ("server", USER_AGENT)]
    if body:
        msg.headers.append(("content-type", content_type or "application/sdp"))
        msg.body = body
    return msg


@dataclass
class SipDialog:
    invite: SipMessage
    link: Link
    offer: Offer
    media: MediaSession
    call_id: str
    local_tag: str = field(default_factory=new_tag)
    state: str = "early"  # early -> confirmed -> terminated
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)
    sdp_version: int = 1
    session_id: int = field(default_factory=lambda: secrets.randbelow(10**9))
    answer: bytes = b""
    last_invite_cseq: int = 0
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # BYE, CANCEL or no ACK
    bye_received: bool = False
    end_reason: str = ""
    caller: str = ""

    @property
    def remote_uri(self) -> str:
        contact = self.invite.get("contact")
        return uri_of(contact) if contact else uri_of(self.invite.get("from"))

    def request(self, method: str, contact: str, extra: list[tuple[str, str]] | None = None,
                body: bytes = b"", content_type: str = "") -> SipMessage:
        """An in-dialog request from us to the caller (we are the UAS: From/To swap)."""
        self.local_cseq += 1
        host, port = self.link.local
        transport = self.link.kind.upper()
        msg = SipMessage(method=method, uri=self.remote_uri)
        msg.headers.append(("via", f"SIP/2.0/{transport} {host}:{port};branch={new_branch()}"
                                   ";rport"))
        msg.headers += [("max-forwards", "70")]
        for route in reversed(self.invite.get_all("record-route")):
            msg.headers.append(("route", route))
        to = self.invite.get("to")
        if not param(to, "tag"):
            to += f";tag={self.local_tag}"
        msg.headers += [("from", to), ("to", self.invite.get("from")),
                        ("call-id", self.invite.call_id),
                        ("cseq", f"{self.local_cseq} {method}"), ("contact", contact),
                        ("user-agent", USER_AGENT)]
        msg.headers += extra or []
        if body:
            msg.headers.append(("content-type", content_type))
            msg.body = body
        return msg
