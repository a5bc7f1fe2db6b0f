"""`python -m voxbus_gateway`: run one gateway replica."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.service import serve

log = logging.getLogger("voxbus_gateway")
ready = asyncio.Event()


async def main(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    from voxbus_gateway.app import Gateway

    gateway = Gateway(bus, settings, bus.name)
    runner = web.AppRunner(gateway.app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    audiosocket = None
    if settings.audiosocket_port:
        audiosocket = await asyncio.start_server(gateway.serve_audiosocket,
                                                 settings.gateway_host, settings.audiosocket_port)
    ready.set()
    log.info("ready", extra={"url": f"ws://{settings.gateway_host}:{settings.gateway_port}/v1/pcm"})
    await stop.wait()
    gateway.draining = True
    await asyncio.gather(*(c.hangup("gateway shutting down") for c in list(gateway.calls.values())),
                         return_exceptions=True)
    if audiosocket is not None:
        audiosocket.close()
    await runner.cleanup()


if __name__ == "__main__":
    serve("gateway", main, ready)
