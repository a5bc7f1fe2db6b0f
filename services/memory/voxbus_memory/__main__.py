"""`python -m voxbus_memory`: run one memory service replica."""

from __future__ import annotations

import asyncio
import logging

from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.redact import Redactor
from voxbus_common.service import serve

log = logging.getLogger("voxbus_memory")
ready = asyncio.Event()


async def main(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    from voxbus_memory.recorder import Recorder
    from voxbus_memory.store import SessionStore

    redact = Redactor.from_setting(settings.redact_pii)
    recorder = Recorder(bus, SessionStore(await bus.sessions_kv()), redact)
    await bus.subscribe(subjects.RPC_MEMORY_CONTEXT, recorder.on_context, queue="memory")
    ready.set()
    log.info("ready", extra={"redact": ",".join(redact.kinds) or "off"})
    # A durable consumer: events published while memory was down are applied when it returns.
    await bus.run_pull_worker(
        stream="VB_EVENTS", durable="memory-recorder", subject=subjects.CONTROL_ALL,
        handler=recorder.on_event, concurrency=1, stop=stop, max_deliver=5,
    )


if __name__ == "__main__":
    serve("memory", main, ready)
