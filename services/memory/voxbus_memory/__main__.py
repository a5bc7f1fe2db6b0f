"""`python -m voxbus_memory`: run one memory service replica."""

from __future__ import annotations

import asyncio
import logging

from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_common.config import MemoryService
from voxbus_common.redact import Redactor
from voxbus_common.rpc_broker import rpc_broker
from voxbus_common.service import serve

log = logging.getLogger("voxbus_memory")
ready = asyncio.Event()


async def main(bus: Bus, settings: MemoryService, stop: asyncio.Event) -> None:
    from voxbus_memory.compaction import Compactor
    from voxbus_memory.longterm import LongTermMemory
    from voxbus_memory.recorder import Recorder
    from voxbus_memory.rpc import serve_rpc
    from voxbus_memory.store import CallerStore, SessionStore

    redact = Redactor.from_setting(settings.redact_pii)
    sessions_kv, callers_kv = await bus.sessions_kv(), await bus.callers_kv()
    sessions = SessionStore(sessions_kv, await bus.direct_reads(sessions_kv))
    compactor = Compactor(bus, sessions, settings, redact)
    callers = CallerStore(callers_kv, await bus.direct_reads(callers_kv))
    longterm = LongTermMemory(bus, sessions, callers, settings, redact)
    recorder = Recorder(bus, sessions, redact, compactor, longterm)
    broker = rpc_broker(settings, f"{bus.name}-rpc")
    serve_rpc(broker, recorder, longterm)
    await broker.start()
    ready.set()
    log.info("ready", extra={"redact": ",".join(redact.kinds) or "off",
                             "summarize_tokens": settings.memory_summarize_tokens,
                             "caller_memory": settings.caller_memory})
    # A durable consumer: events published while memory was down are applied when it returns.
    try:
        await bus.run_pull_worker(
            stream="VB_EVENTS", durable="memory-recorder", subject=subjects.CONTROL_ALL,
            handler=recorder.on_event, concurrency=1, stop=stop, max_deliver=5,
            failure_retries=4,
        )
    finally:
        await broker.stop()
        await compactor.close()
        await longterm.close()


if __name__ == "__main__":
    serve("memory", main, ready)
