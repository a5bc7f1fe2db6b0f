"""The common life cycle of a voxbus service process.

connect -> ensure the stream contract -> start the service's own work -> answer pings ->
stop on SIGTERM/SIGINT (draining the connection). Every service's __main__ is one call here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg

from voxbus_common.bus import Bus
from voxbus_common.config import CoreSettings, Settings, get_settings
from voxbus_common.logs import setup_logging
from voxbus_common.metrics import serve_metrics
from voxbus_common.nats_connect import redact_url
from voxbus_common.redact import Redactor
from voxbus_common.subjects import RPC_PING
from voxbus_common.telemetry import setup_tracing

log = logging.getLogger(__name__)

ServiceMain = Callable[[Bus, Settings, asyncio.Event], Coroutine[Any, Any, None]]


def instance_name(service: str, settings: CoreSettings) -> str:
    return settings.instance_id or f"{service}-{socket.gethostname()}-{os.getpid()}"


async def _answer_pings(bus: Bus, service: str, instance: str, ready: asyncio.Event) -> None:
    async def on_ping(msg: Msg) -> None:
        if msg.reply:
            body = {"service": service, "instance": instance, "ready": ready.is_set()}
            await bus.nc.publish(msg.reply, json.dumps(body).encode())

    await bus.subscribe(RPC_PING, on_ping)


async def run_service(service: str, main: ServiceMain, ready: asyncio.Event) -> None:
    """Run one service until a stop signal; `main` sets `ready` once it can serve."""
    settings = get_settings()
    setup_logging(service, settings.log_level, settings.log_format,
                  Redactor.from_setting(settings.redact_pii))
    setup_tracing(service)
    instance = instance_name(service, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    serve_metrics(settings.metrics_port, service, settings.metrics_host)
    bus = await Bus.connect(settings, instance)
    await bus.ensure_streams()
    bus.after_reconnect(bus.ensure_streams)  # a NATS restart loses the in-memory streams
    await _answer_pings(bus, service, instance, ready)
    log.info("starting", extra={"instance": instance, "nats": redact_url(settings.nats_url)})
    task: asyncio.Task[None] = asyncio.create_task(main(bus, settings, stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failed = task in done and task.exception() is not None
    if failed:
        log.error("service failed", exc_info=task.exception())
    stop.set()
    try:
        await asyncio.wait_for(task, timeout=10.0 + settings.drain_timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
    except Exception:
        pass
    await bus.close()
    log.info("stopped")
    if failed:
        raise SystemExit(1)  # a supervisor (Kubernetes, `voxbus run`) sees the failure


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (its C socket transports cost a fraction of asyncio's per
    message, which is most of a service's work), else the standard loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def serve(service: str, main: ServiceMain, ready: asyncio.Event | None = None) -> None:
    """Process entry point for `python -m voxbus_<service>`."""

    async def runner() -> None:
        await run_service(service, main, ready or asyncio.Event())

    from voxbus_common.agent import AgentError

    try:
        settings = get_settings()
    except AgentError as exc:  # located message, no traceback: the file needs fixing
        print(f"voxbus {service}: bad agent file\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    factory = event_loop_factory(settings.event_loop)
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as loop:
        loop.run(runner())
