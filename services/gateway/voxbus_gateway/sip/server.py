"""The SIP user agent server: who may talk to us, what each request does, and our own
requests (BYE, REFER) with their retransmissions. One instance per gateway replica.

Nothing a peer sends can raise out of here: malformed messages are answered 400 when they
carry enough to address a response and dropped otherwise; peers outside the allow-list get
one 403 per 10 s and are dropped after that; every peer is rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from voxbus_common.config import GatewayService
from voxbus_common.metrics import SIP_DROPPED
from voxbus_gateway.edges.base import ProtocolViolation, carrier_call_id
from voxbus_gateway.sip.dialog import ALLOW, SipDialog, response, warning
from voxbus_gateway.sip.digest import DigestAuth
from voxbus_gateway.sip.edge import SipCallEdge
from voxbus_gateway.sip.media import MediaSession, PortPool
from voxbus_gateway.sip.message import SipMessage, SipParseError, param, parse, user_of
from voxbus_gateway.sip.peers import PeerGate, answer_refused, local_ip_toward
from voxbus_gateway.sip.sdp import Offer, SdpError, build_answer, parse_offer
from voxbus_gateway.sip.srtp import SrtpContext, SrtpError
from voxbus_gateway.sip.transport import Link, UdpTransport, serve_stream

if TYPE_CHECKING:
    from voxbus_gateway.app import Gateway

log = logging.getLogger(__name__)

T1, T2, TIMER_B = 0.5, 4.0, 32.0  # RFC 3261 §17 timers
TIMER_H = 64 * T1  # how long our 2xx waits for its ACK
RESPONSE_CACHE_S = 32.0
TARGET = re.compile(r"[A-Za-z0-9+*#._:@;=%-]{1,200}")  # a number, user@host or sip:/tel: URI


class SipServer:
    def __init__(self, gateway: Gateway, settings: GatewayService) -> None:
        self.gateway = gateway
        self.settings = settings
        self.peers = PeerGate(settings.sip_allow)
        self.auth = (DigestAuth(settings.sip_auth_user, settings.sip_auth_password,
                                settings.sip_realm) if settings.sip_auth_user else None)
        self.pool = PortPool(settings.sip_rtp_port_min, settings.sip_rtp_port_max)
        self.dialogs: dict[str, SipDialog] = {}  # by the SIP Call-ID
        self.edges: dict[str, SipCallEdge] = {}
        self._cache: dict[tuple[str, str, str], tuple[bytes, float]] = {}
        self._client: dict[str, asyncio.Future[SipMessage]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closers: list[Any] = []

    async def start(self, host: str, port: int, tls_port: int,
                    tls: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        if port:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpTransport(self.deliver), local_addr=(host, port))
            self._closers.append(udp)
            self._closers.append(await serve_stream(self.deliver, host, port, None))
        if tls_port and tls is not None:
            self._closers.append(await serve_stream(self.deliver, host, tls_port, tls))

    async def stop(self) -> None:
        await asyncio.sleep(0)  # BYEs of the calls just hung up go out before we cancel
        for closer in self._closers:
            closer.close()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- admission of every message ------------------------------------------------------------

    def deliver(self, data: bytes, link: Link) -> None:
        try:
            self._deliver(data, link)
        except Exception:  # a peer's message must never take the edge down
            log.exception("SIP message handling failed", extra={"peer": link.peer[0]})

    def _deliver(self, data: bytes, link: Link) -> None:
        ip = link.peer[0]
        if not self.peers.allowed(ip):
            SIP_DROPPED.labels("not_allowed").inc()
            if self.peers.should_answer_forbidden(ip):
                answer_refused(data, link, 403, "peer not allowed")
            return
        if not self.peers.rate_ok(ip):
            SIP_DROPPED.labels("rate").inc()
            return
        if not data.strip(b"\r\n"):
            return  # UDP keep-alive
        try:
            msg, _ = parse(data)
        except SipParseError as exc:
            SIP_DROPPED.labels("malformed").inc()
            log.warning("malformed SIP from %s: %s", ip, exc)
            answer_refused(data, link, exc.status, str(exc))
            return
        if msg.is_request:
            self._request(msg, link)
        else:
            self._response(msg)

    # -- requests -------------------------------------------------------------------------------

    def reply(self, request: SipMessage, link: Link, status: int, reason: str = "",
              to_tag: str = "", body: bytes = b"", extra: list[tuple[str, str]] | None = None,
              ) -> None:
        msg = response(request, status, link, reason, to_tag, body)
        msg.headers += extra or []
        data = msg.to_bytes()
        link.send(data)
        now = time.monotonic()
        self._cache[(request.call_id, request.branch, request.method)] = (data, now)
        if len(self._cache) > 2000:
            self._cache = {k: v for k, v in self._cache.items()
                           if now - v[1] < RESPONSE_CACHE_S}

    def _request(self, msg: SipMessage, link: Link) -> None:
        cached = self._cache.get((msg.call_id, msg.branch, msg.method))
        if cached is not None and msg.method != "ACK":
            link.send(cached[0])  # a retransmission: the same answer again
            return
        dialog = self.dialogs.get(msg.call_id)
        if msg.method == "INVITE":
            self._spawn(self._invite(msg, link, dialog))
        elif msg.method == "ACK":
            if dialog is not None and msg.cseq[0] == dialog.last_invite_cseq:
                dialog.acked.set()
        elif msg.method == "OPTIONS":
            self.reply(msg, link, 200, extra=[("allow", ALLOW), ("accept", "application/sdp")])
        elif msg.method not in ALLOW.split(", "):
            self.reply(msg, link, 405, extra=[("allow", ALLOW)])
        elif dialog is None or (msg.method != "CANCEL"
                                and param(msg.get("to"), "tag") != dialog.local_tag):
            self.reply(msg, link, 481)
        elif msg.method == "BYE":
            self.reply(msg, link, 200)
            dialog.bye_received = True
            self._end(dialog, "caller hung up")
        elif msg.method == "CANCEL":
            self._cancel(msg, link, dialog)
        elif msg.method == "INFO":
            self.reply(msg, link, 200)
            self._info_dtmf(msg, dialog)
        else:  # NOTIFY: progress of a transfer we asked for; REFER: we do not take them
            self.reply(msg, link, 200 if msg.method == "NOTIFY" else 405,
                       extra=[("allow", ALLOW)])

    def _end(self, dialog: SipDialog, reason: str) -> None:
        dialog.end_reason = dialog.end_reason or reason
        dialog.ended.set()
        edge = self.edges.get(dialog.invite.call_id)
        if edge is not None:
            edge.end(reason)

    def _cancel(self, msg: SipMessage, link: Link, dialog: SipDialog) -> None:
        self.reply(msg, link, 200)
        if dialog.state == "early" and msg.cseq[0] == dialog.invite.cseq[0]:
            dialog.cancelled.set()
            self.reply(dialog.invite, dialog.link, 487, to_tag=dialog.local_tag)
            dialog.state = "terminated"
            self._end(dialog, "caller cancelled")

    def _info_dtmf(self, msg: SipMessage, dialog: SipDialog) -> None:
        """DTMF in SIP INFO (application/dtmf-relay `Signal=5`), which some PBXs send."""
        kind = msg.get("content-type").lower()
        text = msg.body.decode("utf-8", "replace")
        digit = ""
        if kind.startswith("application/dtmf-relay"):
            for line in text.splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "signal":
                    digit = value.strip()[:1]
        elif kind.startswith("application/dtmf"):
            digit = text.strip()[:1]
        edge = self.edges.get(msg.call_id)
        if digit and edge is not None:
            edge.dtmf(digit.upper())

    async def _invite(self, msg: SipMessage, link: Link, dialog: SipDialog | None) -> None:
        if param(msg.get("to"), "tag"):
            if dialog is None or param(msg.get("to"), "tag") != dialog.local_tag:
                self.reply(msg, link, 481)
            else:
                self._reinvite(msg, link, dialog)
            return
        if dialog is not None:
            self.reply(msg, link, 482, reason="Loop Detected")
            return
        if self.auth is not None and not self.auth.check(msg.get("authorization"), "INVITE"):
            self.reply(msg, link, 401, extra=[("www-authenticate", self.auth.challenge())])
            return
        if msg.get("require"):
            self.reply(msg, link, 420, extra=[("unsupported", msg.get("require"))])
            return
        try:
            offer, srtp = self._negotiate(msg, link)
        except SdpError as exc:
            self.reply(msg, link, 488, extra=[warning(str(exc))])
            return
        self.reply(msg, link, 100)
        why = self.gateway.refusal() or self.gateway.admission.source_refusal(link.peer[0])
        if not why and self.gateway.admission.full(SipCallEdge.name, link.peer[0]):
            why = "too many calls are being set up; retry shortly"
        if why:
            self.reply(msg, link, 503, extra=[("retry-after", "5"),
                                              warning(why)])
            return
        media = MediaSession(self.settings.bus_sample_rate, self.pool,
                             carrier_call_id(msg.call_id))
        try:
            await media.open(self.settings.gateway_host)
        except OSError as exc:
            self.reply(msg, link, 503, extra=[warning(str(exc))])
            return
        media.configure(offer, srtp, signalling_ip=link.peer[0])
        dialog = SipDialog(invite=msg, link=link, offer=offer, media=media,
                           call_id=media.call_id, caller=user_of(msg.get("from")))
        dialog.last_invite_cseq = msg.cseq[0]
        self.dialogs[msg.call_id] = dialog
        self.edges[msg.call_id] = SipCallEdge(self, dialog)
        self.reply(msg, link, 180, to_tag=dialog.local_tag)
        try:
            await self.gateway.serve_edge(self.edges[msg.call_id], source=link.peer[0])
        finally:
            self.dialogs.pop(msg.call_id, None)
            self.edges.pop(msg.call_id, None)
            await media.close()

    def _negotiate(self, msg: SipMessage, link: Link) -> tuple[Offer, SrtpContext | None]:
        if not msg.body:
            raise SdpError("an SDP offer in the INVITE is required")
        if not msg.get("content-type", "application/sdp").lower().startswith("application/sdp"):
            raise SdpError(f"unsupported body type {msg.get('content-type')[:40]}")
        offer = parse_offer(msg.body)
        mode = self.settings.sip_srtp
        if not offer.secure:
            if link.kind == "tls" and mode == "required":
                raise SdpError("SRTP is required")
            return offer, None
        if link.kind != "tls" or mode == "off":
            raise SdpError("SRTP keys (SDES) are only accepted over SIP over TLS")
        for crypto in offer.crypto:
            try:
                return offer, SrtpContext(crypto)
            except SrtpError:
                continue
        raise SdpError("no usable a=crypto line in the SRTP offer")

    def _reinvite(self, msg: SipMessage, link: Link, dialog: SipDialog) -> None:
        """Hold, resume or a new media address in the same call; a bad offer leaves the
        call as it was (488). Without a body we answer with our current session."""
        if msg.body:
            try:
                offer = parse_offer(msg.body)
                if offer.secure != (dialog.media.srtp is not None):
                    raise SdpError("a re-INVITE cannot switch between RTP and SRTP")
            except SdpError as exc:
                self.reply(msg, link, 488, to_tag=dialog.local_tag,
                           extra=[warning(str(exc))])
                return
            offer.crypto = dialog.offer.crypto
            dialog.media.configure(offer, dialog.media.srtp, signalling_ip=link.peer[0])
            dialog.offer = offer
            dialog.sdp_version += 1
            dialog.answer = self._answer_sdp(dialog, link)
        dialog.last_invite_cseq = msg.cseq[0]
        dialog.acked.clear()
        self._send_ok(msg, link, dialog)
        log.info("re-INVITE", extra={"hold": dialog.offer.on_hold})

    # -- answering and ending -------------------------------------------------------------------

    def _contact(self, link: Link) -> str:
        host = link.local[0] if link.local[0] not in ("0.0.0.0", "::") else \
            local_ip_toward(link.peer[0])
        host = f"[{host}]" if ":" in host else host
        return f"<sip:voxbus@{host}:{link.local[1]};transport={link.kind}>"

    def _advertised(self, link: Link) -> str:
        if self.settings.sip_media_address:
            return self.settings.sip_media_address
        if link.local[0] not in ("0.0.0.0", "::"):
            return link.local[0]
        return local_ip_toward(link.peer[0])

    def _answer_sdp(self, dialog: SipDialog, link: Link) -> bytes:
        srtp = dialog.media.srtp
        return build_answer(dialog.offer, self._advertised(link), dialog.media.port,
                            dialog.session_id, dialog.sdp_version,
                            srtp.ours if srtp is not None else None)

    def _send_ok(self, invite: SipMessage, link: Link, dialog: SipDialog) -> None:
        self.reply(invite, link, 200, to_tag=dialog.local_tag, body=dialog.answer,
                   extra=[("contact", self._contact(link)), ("allow", ALLOW)])
        if not link.reliable:
            self._spawn(self._until_acked(invite, link, dialog))

    async def answer(self, dialog: SipDialog) -> None:
        if self.settings.sip_ring_ms > 0:  # ring, unless the caller gives up first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dialog.cancelled.wait(), self.settings.sip_ring_ms / 1000)
        if dialog.cancelled.is_set():
            raise ProtocolViolation("the caller cancelled", 1000)
        dialog.answer = self._answer_sdp(dialog, dialog.link)
        self._send_ok(dialog.invite, dialog.link, dialog)
        dialog.state = "confirmed"
        dialog.media.start()
        log.info("SIP call answered", extra={"codec": dialog.offer.codec,
                                             "transport": dialog.link.kind,
                                             "srtp": dialog.media.srtp is not None})

    async def confirmed(self, dialog: SipDialog) -> None:
        """Wait for the caller's ACK of our 200 OK (a confirmed dialog, §13.3.1.4); raise
        when the caller hangs up first or never ACKs within 64*T1 (Timer H)."""
        acked = asyncio.ensure_future(dialog.acked.wait())
        ended = asyncio.ensure_future(dialog.ended.wait())
        try:
            await asyncio.wait({acked, ended}, timeout=TIMER_H,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            acked.cancel()
            ended.cancel()
        if not dialog.acked.is_set():
            raise ProtocolViolation(dialog.end_reason or "no ACK from the caller", 1000)

    async def _until_acked(self, invite: SipMessage, link: Link, dialog: SipDialog) -> None:
        """Retransmit our 2xx until the ACK comes (§13.3.1.4); none in 64*T1 ends the call."""
        data = self._cache.get((invite.call_id, invite.branch, "INVITE"), (b"", 0.0))[0]
        interval, waited = T1, 0.0
        while waited < TIMER_H:
            try:
                await asyncio.wait_for(dialog.acked.wait(), interval)
                return
            except TimeoutError:
                waited += interval
                interval = min(interval * 2, T2)
                if dialog.state == "terminated":
                    return
                link.send(data)
        log.warning("no ACK for our 200 OK: ending the call")
        self._end(dialog, "no ACK from the caller")

    async def request(self, dialog: SipDialog, method: str,
                      extra: list[tuple[str, str]] | None = None) -> SipMessage | None:
        """Send an in-dialog request and wait for its final response (None: no answer)."""
        link = dialog.link
        req = dialog.request(method, self._contact(link), extra)
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._client[req.branch] = future
        data, interval, waited = req.to_bytes(), T1, 0.0
        try:
            while waited < TIMER_B and not link.closed:
                link.send(data)
                step = TIMER_B if link.reliable else interval
                try:
                    return await asyncio.wait_for(asyncio.shield(future), step)
                except TimeoutError:
                    waited += step
                    interval = min(interval * 2, T2)
            return None
        finally:
            self._client.pop(req.branch, None)

    def _response(self, msg: SipMessage) -> None:
        future = self._client.get(msg.branch)
        if future is not None and not future.done() and msg.status >= 200:
            future.set_result(msg)

    async def refer(self, dialog: SipDialog, target: str) -> bool:
        """Blind transfer (RFC 3515): the caller's side calls `target`; we hang up after."""
        if dialog.state != "confirmed" or not TARGET.fullmatch(target):
            return False  # not answered yet, or a target that is no SIP/tel address
        if target.startswith(("sip:", "sips:", "tel:")):
            uri = target
        elif "@" in target:
            uri = f"sip:{target}"
        else:  # a number: the caller's side (trunk, PBX) routes it
            uri = f"sip:{target}@{dialog.link.peer[0]}"
        answer = await self.request(dialog, "REFER", [("refer-to", f"<{uri}>"),
                                                      ("referred-by", self._contact(dialog.link))])
        accepted = answer is not None and 200 <= answer.status < 300
        log.info("REFER", extra={"accepted": accepted,
                                 "status": answer.status if answer else None})
        return accepted

    async def close_dialog(self, dialog: SipDialog, reason: str) -> None:
        """The call ended on our side or theirs: say so in SIP if it is ours to say."""
        if dialog.state == "early" and not dialog.cancelled.is_set():
            status = 486 if "already connected" in reason else 503 if "retry" in reason else 500
            self.reply(dialog.invite, dialog.link, status, to_tag=dialog.local_tag,
                       extra=[warning(reason[:80])])
        elif dialog.state == "confirmed" and not dialog.bye_received:
            for _ in range(150):  # let the goodbye play out (at most 3 s) before hanging up
                if dialog.media.buffered_ms < 20:
                    break
                await asyncio.sleep(0.02)
            # the BYE's transaction (retransmissions, up to 32 s) must not hold the call
            self._spawn(self.request(dialog, "BYE"))
        dialog.state = "terminated"
