"""`python -m voxbus_gateway`: run one gateway replica."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from voxbus_common.bus import Bus
from voxbus_common.config import GatewayService
from voxbus_common.service import serve

log = logging.getLogger("voxbus_gateway")
ready = asyncio.Event()


def tls_context(settings: GatewayService) -> ssl.SSLContext | None:
    """https/wss when a certificate is configured (else terminate TLS at the ingress)."""
    if not (settings.tls_cert_file and settings.tls_key_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def main(bus: Bus, settings: GatewayService, stop: asyncio.Event) -> None:
    from voxbus_common.routes import load_router
    from voxbus_gateway.app import Gateway
    from voxbus_gateway.gateway_watch import GatewayWatch
    from voxbus_gateway.http_guard import HttpGuard, runner_options

    routes = load_router(settings.routes_file)  # a bad routes file stops the start, located
    gateway = Gateway(bus, settings, bus.name)
    guard = HttpGuard.from_settings(settings)  # slow and malformed requests (http_guard.py)
    runner = web.AppRunner(guard.install(gateway.app()), handle_signals=False,
                           **runner_options(settings))
    await runner.setup()
    http = await guard.listen(runner, settings.gateway_host, settings.gateway_port,
                              tls_context(settings))
    audiosocket = None
    if settings.audiosocket_port:
        audiosocket = await asyncio.start_server(gateway.serve_audiosocket,
                                                 settings.gateway_host, settings.audiosocket_port)
    sip = None
    if settings.sip_port or settings.sip_tls_port:
        from voxbus_gateway.sip.server import SipServer

        sip = SipServer(gateway, settings)
        await sip.start(settings.gateway_host, settings.sip_port, settings.sip_tls_port,
                        tls_context(settings))
    await gateway.serve_control_bus()
    await gateway.stt.start()  # STT crash failover and admission (stt_watch.py)
    peers = GatewayWatch(bus, settings, gateway.gateway_id, settings.gateway_lease_s)
    await peers.start()  # calls of a lost gateway end cleanly (gateway_watch.py)
    await gateway.quorum.start()  # no JetStream quorum: refuse and end calls (quorum.py)
    control = None
    if settings.control_port:
        from voxbus_gateway.control.server import start_control_server

        control, _ = await start_control_server(bus, settings)
    gateway.starting = False  # /healthz says ready only now that the control API listens
    ready.set()
    scheme = "wss" if settings.tls_cert_file else "ws"
    log.info("ready", extra={"url": f"{scheme}://{settings.gateway_host}:{settings.gateway_port}",
                             "routes": len(routes.routes), "sip_port": settings.sip_port})
    await stop.wait()
    await gateway.drain(settings.drain_timeout_s)
    await gateway.quorum.stop()
    await gateway.stt.stop()
    await peers.stop()
    if control is not None:
        await control.stop(grace=5.0)
    if audiosocket is not None:
        audiosocket.close()
    if sip is not None:
        await sip.stop()
    http.close()  # no new connections; the runner ends the open ones
    await runner.cleanup()


if __name__ == "__main__":
    serve("gateway", main, ready)
