"""The gateway's HTTP server: health, the raw PCM WebSocket edge, and call bookkeeping."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.ids import InvalidCallId, new_call_id, validate_call_id
from voxbus_common.logs import call_id_var
from voxbus_gateway.call import Call
from voxbus_gateway.pcm_edge import SUPPORTED_RATES, PcmWebSocketEdge, pump_caller

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, bus: Bus, settings: Settings, gateway_id: str) -> None:
        self.bus = bus
        self.settings = settings
        self.gateway_id = gateway_id
        self.calls: dict[str, Call] = {}
        self.draining = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/v1/pcm", self.pcm_call)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "gateway": self.gateway_id,
                                  "active_calls": len(self.calls),
                                  "nats_connected": self.bus.nc.is_connected})

    def _call_params(self, request: web.Request) -> tuple[str, int]:
        raw_id = request.query.get("call_id") or new_call_id()
        try:
            call_id = validate_call_id(raw_id)
        except InvalidCallId as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            rate = int(request.query.get("sample_rate", "16000"))
        except ValueError:
            raise web.HTTPBadRequest(text="sample_rate must be an integer") from None
        if rate not in SUPPORTED_RATES:
            raise web.HTTPBadRequest(text=f"sample_rate must be one of {SUPPORTED_RATES}")
        if call_id in self.calls:
            raise web.HTTPConflict(text=f"call {call_id} is already connected")
        if self.draining:
            raise web.HTTPServiceUnavailable(text="gateway is draining; retry another replica")
        return call_id, rate

    async def pcm_call(self, request: web.Request) -> web.StreamResponse:
        call_id, rate = self._call_params(request)
        ws = web.WebSocketResponse(max_msg_size=256 * 1024, heartbeat=20.0)
        await ws.prepare(request)
        call_id_var.set(call_id)
        edge = PcmWebSocketEdge(ws, rate, self.settings.bus_sample_rate)
        call = Call(self.bus, self.settings, call_id, edge, self.gateway_id)
        self.calls[call_id] = call
        reason, code = "gateway error", 1011
        try:
            await call.start()
            await edge.send_event({"type": "call", "call_id": call_id, "sample_rate": rate,
                                   "gateway": self.gateway_id})
            reason, code = await asyncio.wait_for(pump_caller(edge, call),
                                                  timeout=self.settings.max_call_seconds)
        except TimeoutError:
            reason, code = "maximum call duration reached", 1000
        except Exception:
            log.exception("call failed")
        finally:
            await asyncio.shield(self._finish(call, edge, reason, code))
        return ws

    async def _finish(self, call: Call, edge: PcmWebSocketEdge, reason: str, code: int) -> None:
        try:
            await call.hangup(reason)
            await edge.send_event({"type": "ended", "reason": reason})
            await edge.close(code, reason)
        except Exception:
            log.exception("hang-up failed")
        finally:
            self.calls.pop(call.call_id, None)
