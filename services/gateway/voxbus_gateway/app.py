"""The gateway's HTTP server: health, the caller edges, and call bookkeeping.

Every edge is a WebSocket adapter (edges/) that hands the gateway a call id after its
protocol's handshake; `serve_edge` runs the call from there, identically for all edges.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import WSCloseCode, web
from nats.aio.msg import Msg

from voxbus.v1.control_pb2 import GatewayCalls
from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_common.config import GatewayService
from voxbus_common.ids import InvalidCallId, new_call_id, validate_call_id
from voxbus_common.logs import call_id_var
from voxbus_common.metrics import ACTIVE_CALLS, CALLS, CALLS_REFUSED
from voxbus_common.tokens import InvalidToken, MediaTokens
from voxbus_gateway.admission import Admission
from voxbus_gateway.call import Call
from voxbus_gateway.claims import CallClaims
from voxbus_gateway.edge import CallerEdge
from voxbus_gateway.edges.asterisk import AsteriskWsEdge
from voxbus_gateway.edges.audiosocket import AudioSocketEdge
from voxbus_gateway.edges.base import ProtocolViolation, WsEdge
from voxbus_gateway.edges.pcm_ws import SUPPORTED_RATES, PcmWebSocketEdge
from voxbus_gateway.edges.teler import TelerEdge
from voxbus_gateway.edges.twilio import TwilioEdge
from voxbus_gateway.edges.twilio_auth import valid_twilio_signature
from voxbus_gateway.edges.twilio_like import ExotelEdge, PlivoEdge, TelnyxEdge
from voxbus_gateway.edges.twilio_rest import TwilioRest
from voxbus_gateway.edges.vonage import VonageEdge
from voxbus_gateway.quorum import QuorumWatch
from voxbus_gateway.stt_watch import SttWatch

log = logging.getLogger(__name__)

BUS_UNAVAILABLE = "the message bus is not answering; please call again shortly"

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CARRIERS: dict[str, type[WsEdge]] = {
    "/v1/telnyx": TelnyxEdge, "/v1/exotel": ExotelEdge, "/v1/plivo": PlivoEdge,
    "/v1/teler": TelerEdge, "/v1/vonage": VonageEdge, "/v1/asterisk": AsteriskWsEdge,
}


def is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


class Gateway:
    def __init__(self, bus: Bus, settings: GatewayService, gateway_id: str) -> None:
        self.bus = bus
        self.settings = settings
        self.gateway_id = gateway_id
        self.calls: dict[str, Call] = {}
        self.claims = CallClaims(bus, gateway_id)
        self.draining = False
        self.starting = True  # until the control API and the watchers run (__main__.py)
        self._calls_changed = asyncio.Event()
        self.stt = SttWatch(bus, settings.stt_lease_s, lambda: self.calls.values())
        self._warned_unsigned = False
        self.tokens = MediaTokens(settings.media_token_keys)
        self.quorum = QuorumWatch(bus.js.account_info, settings.nats_quorum_grace_s,
                                  self._bus_lost)
        self.admission = Admission(settings.gateway_calls_per_source_per_s,
                                   settings.gateway_calls_per_source_burst,
                                   settings.gateway_max_unconfirmed,
                                   settings.gateway_max_unconfirmed_per_source)

    async def serve_control_bus(self) -> None:
        """Answer the control API's call lists (every gateway replies with its own calls)."""

        async def on_list(msg: Msg) -> None:
            if msg.reply:
                calls = GatewayCalls(calls=[c.commands.summary() for c in self.calls.values()])
                await self.bus.nc.publish(msg.reply, calls.SerializeToString())

        await self.bus.subscribe(subjects.RPC_GATEWAY_CALLS, on_list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.health)  # readiness (503 while draining)
        app.router.add_get("/livez", self.alive)  # liveness: a draining gateway is alive
        app.router.add_get("/", self.browser_page)
        app.router.add_static("/static", STATIC, show_index=False)
        app.router.add_get("/v1/pcm", self.pcm_call)
        app.router.add_get("/v1/browser", self.pcm_call)
        app.router.add_get("/v1/twilio", self.twilio_stream)
        app.router.add_post("/v1/twilio/voice", self.twilio_twiml)
        for path, edge in CARRIERS.items():
            app.router.add_get(path, self._carrier_handler(edge))
        return app

    def _carrier_handler(self, edge_type: type[WsEdge]) -> Handler:
        """Carriers whose streams carry no signature: admitted from loopback (a local SBC or
        proxy that authenticates them) unless VOXBUS_CARRIER_ALLOW_LOOPBACK_ONLY=false."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if self.settings.carrier_allow_loopback_only and not is_loopback(request):
                raise web.HTTPForbidden(text=f"{edge_type.name}: only accepted from loopback "
                                             "(put the authenticating proxy in front)")
            ws = await self._upgrade(request, edge_type.name)
            await self.serve_edge(edge_type(ws, self.settings.bus_sample_rate),  # type: ignore[call-arg]
                                  source=request.remote or "")
            return ws

        return handler

    async def serve_audiosocket(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        """One Asterisk AudioSocket TCP connection = one call."""
        source = str((writer.get_extra_info("peername") or ("",))[0])
        why = self.refusal() or self.admission.source_refusal(source)
        if why or self.admission.full(AudioSocketEdge.name, source):
            CALLS_REFUSED.labels((why or "edge full").split(";")[0]).inc()
            writer.close()
            return
        await self.serve_edge(AudioSocketEdge(reader, writer, self.settings.bus_sample_rate),
                              source=source)

    async def _bus_lost(self, reason: str) -> None:
        """No quorum: end every live call with the reason (the caller hears why)."""
        log.error("ending %d live calls: %s", len(self.calls), reason)
        for call in list(self.calls.values()):
            call.bus_retry_s = 0.5  # no leader will come soon: do not hold the hang-up
            call.request_hangup(reason)

    async def health(self, request: web.Request) -> web.Response:
        """Readiness: 503 while starting, draining or without a usable bus, so the load
        balancer sends new calls elsewhere."""
        status = ("starting" if self.starting else "draining" if self.draining
                  else "bus lost" if self.quorum.lost else "ok")
        return web.json_response({"status": status,
                                  "gateway": self.gateway_id, "active_calls": len(self.calls),
                                  "admission": self.refusal() or "open",
                                  "unconfirmed": dict(self.admission.unconfirmed),
                                  "nats_connected": self.bus.nc.is_connected},
                                 status=200 if status == "ok" else 503)

    async def alive(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "active_calls": len(self.calls)})

    async def drain(self, timeout_s: float) -> None:
        """Stop taking calls, let the live ones finish for up to `timeout_s`, then hang up
        what is left (SIGTERM; Kubernetes waits terminationGracePeriodSeconds)."""
        self.draining = True
        log.info("draining", extra={"active_calls": len(self.calls), "timeout_s": timeout_s})
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.calls and (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            self._calls_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calls_changed.wait(), remaining)
        left = [c.hangup("gateway shutting down") for c in list(self.calls.values())]
        await asyncio.gather(*left, return_exceptions=True)

    # -- raw PCM ------------------------------------------------------------------------------

    async def browser_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    def _check_media_token(self, request: web.Request, call_id: str) -> tuple[str, str]:
        """Refuse unauthenticated media before any audio is processed; returns the call id
        (a token may bind one) and the caller's identity: the token's subject, or (loopback
        without tokens, for development) the `caller` query parameter."""
        if not self.tokens.enabled:
            if not is_loopback(request):
                raise web.HTTPUnauthorized(text="media tokens are not configured "
                                                "(VOXBUS_MEDIA_TOKEN_KEYS): loopback callers only")
            return call_id, request.query.get("caller", "")[:128]
        token = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        try:
            claims = self.tokens.verify(token, call_id)
        except InvalidToken as exc:
            raise web.HTTPUnauthorized(text=str(exc)) from None
        return call_id or claims.call_id, claims.subject

    async def pcm_call(self, request: web.Request) -> web.StreamResponse:
        raw_id, caller = self._check_media_token(request, request.query.get("call_id", ""))
        try:
            call_id = validate_call_id(raw_id or new_call_id())
        except InvalidCallId as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            rate = int(request.query.get("sample_rate", "16000"))
        except ValueError:
            raise web.HTTPBadRequest(text="sample_rate must be an integer") from None
        if rate not in SUPPORTED_RATES:
            raise web.HTTPBadRequest(text=f"sample_rate must be one of {SUPPORTED_RATES}")
        self._check_admission(call_id)
        browser = request.path.endswith("/browser")
        ws = await self._upgrade(request, "browser" if browser else "pcm-ws")
        edge = PcmWebSocketEdge(ws, call_id, rate, self.settings.bus_sample_rate,
                                marks=browser or request.query.get("marks") == "1",
                                name="browser" if browser else "pcm-ws")
        edge.caller = caller
        await self.serve_edge(edge, source=request.remote or "")
        return ws

    # -- Twilio ---------------------------------------------------------------------------------

    def _public_url(self, request: web.Request, ws: bool) -> str:
        """The URL as the carrier requested it (behind a TLS proxy: from VOXBUS_PUBLIC_URL)."""
        base = self.settings.public_url.rstrip("/")
        if base:
            if ws:
                base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
            return base + request.path_qs
        scheme = ("wss" if request.secure else "ws") if ws else request.scheme
        return f"{scheme}://{request.host}{request.path_qs}"

    async def _check_twilio(self, request: web.Request, ws: bool) -> None:
        token = self.settings.twilio_auth_token
        if not token:
            if not is_loopback(request):
                raise web.HTTPForbidden(text="Twilio endpoint: no auth token configured "
                                             "(VOXBUS_TWILIO_AUTH_TOKEN); loopback callers only")
            if not self._warned_unsigned:
                log.warning("Twilio requests are not signature-checked: set "
                            "VOXBUS_TWILIO_AUTH_TOKEN (loopback callers only until then)")
                self._warned_unsigned = True
            return
        params = {} if ws else {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not valid_twilio_signature(self._public_url(request, ws), params, token, signature):
            raise web.HTTPForbidden(text="invalid X-Twilio-Signature")

    async def twilio_stream(self, request: web.Request) -> web.StreamResponse:
        await self._check_twilio(request, ws=True)
        ws = await self._upgrade(request, TwilioEdge.name)
        rest = None
        if self.settings.twilio_auth_token:
            rest = TwilioRest(self.settings.twilio_account_sid, self.settings.twilio_auth_token,
                              self.settings.twilio_api_base)
        await self.serve_edge(TwilioEdge(ws, self.settings.bus_sample_rate, rest),
                              source=request.remote or "")
        return ws

    async def twilio_twiml(self, request: web.Request) -> web.Response:
        """The voice webhook: connect the call to our bidirectional media stream."""
        await self._check_twilio(request, ws=False)
        stream_url = self._public_url(request, ws=True).split("?")[0].replace(
            "/v1/twilio/voice", "/v1/twilio")
        caller = str((await request.post()).get("From", ""))[:64]  # the caller's number
        param = f"<Parameter name=\"caller\" value={quoteattr(caller)}/>" if caller else ""
        twiml = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                 f"<Stream url={quoteattr(stream_url)}>{param}</Stream></Connect></Response>")
        return web.Response(text=twiml, content_type="text/xml")

    # -- common -------------------------------------------------------------------------------

    def _check_admission(self, call_id: str) -> None:
        if call_id in self.calls:
            raise web.HTTPConflict(text=f"call {call_id} is already connected")

    def refusal(self) -> str:
        """Why a new call cannot be taken now ("" = it can): admission control, so that a
        saturated stage refuses new calls with a reason instead of degrading every call."""
        if self.draining:
            return "gateway is draining; retry another replica"
        if self.quorum.lost:
            return "the message bus lost quorum; retry shortly"
        if self.settings.gateway_max_calls and len(self.calls) >= self.settings.gateway_max_calls:
            return "this gateway is at its call limit; retry another replica"
        if self.stt.stt_full():
            return "speech recognition is at capacity; retry shortly"
        return ""

    async def _upgrade(self, request: web.Request, edge: str) -> web.WebSocketResponse:
        why = self.refusal()  # every edge: checked before the socket opens
        if why:
            CALLS_REFUSED.labels(why.split(";")[0]).inc()
            raise web.HTTPServiceUnavailable(text=why, headers={"Retry-After": "5"})
        why = self.admission.source_refusal(request.remote or "")
        if why:
            CALLS_REFUSED.labels("source rate").inc()
            raise web.HTTPTooManyRequests(text=why, headers={"Retry-After": "1"})
        if self.admission.full(edge, request.remote or ""):
            CALLS_REFUSED.labels("edge full").inc()
            raise web.HTTPServiceUnavailable(
                text=f"too many {edge} calls are being set up; retry shortly",
                headers={"Retry-After": "1"})
        ws = web.WebSocketResponse(max_msg_size=256 * 1024, heartbeat=20.0)
        await ws.prepare(request)
        return ws

    async def _confirmed_call_id(self, edge: CallerEdge, source: str) -> str | None:
        """The call id once the edge's protocol confirmed the call (handshake, and for SIP
        the ACK of our answer), claimed across replicas; None when it never was (the edge
        is finished). Until then the call counts as unconfirmed on its edge."""
        if not self.admission.enter(edge.name, source):
            CALLS_REFUSED.labels("edge full").inc()
            await edge.finish("too many calls are being set up; retry shortly",
                              WSCloseCode.TRY_AGAIN_LATER)
            return None
        call_id = ""
        try:
            try:
                call_id = await asyncio.wait_for(edge.handshake(),
                                                 timeout=self.settings.handshake_timeout_s)
            except TimeoutError:
                await edge.finish("no handshake in time", WSCloseCode.POLICY_VIOLATION)
                return None
            if call_id in self.calls:
                raise ProtocolViolation(f"call {call_id} is already connected")
            await self.claims.claim(call_id)
            confirm = getattr(edge, "confirm", None)
            if confirm is not None:
                try:
                    await confirm()
                except BaseException:
                    await self.claims.release(call_id)
                    raise
            return call_id
        except ProtocolViolation as exc:
            log.warning("call not confirmed: %s", exc, extra={"edge": edge.name})
            await edge.send_event({"type": "error", "message": str(exc)})
            await edge.finish(str(exc), exc.code)
        except Exception:  # the bus did not answer the claim, even after retries
            log.exception("call not taken: its claim could not be stored",
                          extra={"edge": edge.name})
            with contextlib.suppress(Exception):
                await edge.send_event({"type": "error", "message": BUS_UNAVAILABLE})
            await edge.finish(BUS_UNAVAILABLE, WSCloseCode.TRY_AGAIN_LATER)
        finally:
            self.admission.leave(edge.name, source)
        return None

    async def serve_edge(self, edge: CallerEdge, source: str = "") -> None:
        """Handshake and confirmation, then run the call until the caller or the agent ends
        it. Nothing of the call (greeting, STT session) starts before it is confirmed."""
        call_id = await self._confirmed_call_id(edge, source)
        if call_id is None:
            return
        call_id_var.set(call_id)
        call = Call(self.bus, self.settings, call_id, edge, self.gateway_id)
        self.calls[call_id] = call
        CALLS.labels(edge.name).inc()
        ACTIVE_CALLS.inc()
        reason, code = "gateway error", int(WSCloseCode.INTERNAL_ERROR)
        try:
            await call.start()
            announce = getattr(edge, "announce", None)
            if announce is not None:
                await announce()
            await call.greet()  # after the client knows the call
            pump = asyncio.create_task(edge.pump(call))
            waiters: set[asyncio.Future[Any]] = {pump, call.hangup_requested}
            done, _ = await asyncio.wait(waiters,
                                         timeout=self.settings.max_call_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            if call.hangup_requested.done():  # the agent's hang-up wins a tie with the caller's
                pump.cancel()
                reason, code = call.hangup_requested.result(), WSCloseCode.OK
            elif pump in done:
                reason, code = pump.result()
            else:
                pump.cancel()
                reason, code = "maximum call duration reached", WSCloseCode.OK
        except ProtocolViolation as exc:
            await edge.send_event({"type": "error", "message": str(exc)})
            reason, code = str(exc), exc.code
        except Exception:
            log.exception("call failed")
            if not call.started:  # the bus did not take the call's first records
                reason, code = BUS_UNAVAILABLE, int(WSCloseCode.TRY_AGAIN_LATER)
                with contextlib.suppress(Exception):
                    await edge.send_event({"type": "error", "message": reason})
        finally:
            await asyncio.shield(self._finish(call, edge, reason, code))

    async def _finish(self, call: Call, edge: CallerEdge, reason: str, code: int) -> None:
        flush_s = 2.0 if self.quorum.lost else 15.0  # (no STT can confirm without a bus)
        try:
            try:
                await call.hangup(reason, flush_timeout_s=flush_s)
            finally:  # the caller hears the reason even when the bus could not record it
                await edge.finish(reason, code)
        except Exception:
            log.exception("hang-up failed")
        finally:
            if self.calls.pop(call.call_id, None) is not None:
                ACTIVE_CALLS.dec()
            self._calls_changed.set()
            await self.claims.release(call.call_id)
