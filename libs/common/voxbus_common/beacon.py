"""A liveness beat that says "this process is alive", not "this event loop was free".

A replica's heartbeat used to be a task on its busy event loop: on a saturated node the loop
fell a second behind, the beat went silent, and a live replica was failed over. The beacon
beats from its own thread, on its own event loop and NATS connection, so a short lease
detects a dead process (kill -9, OOM, a lost node) fast without mistaking load for death.
A wedged process still dies to the watchers: the main loop ticks the beacon, and after
`stall_s` without a tick the beacon falls silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from voxbus_common.bus import Bus
from voxbus_common.config import CoreSettings

log = logging.getLogger(__name__)


class Beacon:
    """Puts `key` = {"t": unix time, **state()} into `bucket` every `every_s` seconds."""

    def __init__(self, settings: CoreSettings, name: str, bucket: str, key: str, every_s: float,
                 state: Callable[[], dict[str, Any]], stall_s: float = 10.0) -> None:
        self.settings = settings
        self.name = name
        self.bucket = bucket
        self.key = key
        self.every_s = every_s
        self.state = state
        self.stall_s = stall_s
        self._ticked = time.monotonic()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"beacon-{key}", daemon=True)

    def tick(self) -> None:
        """Called from the main event loop: it is still turning."""
        self._ticked = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        """Stop beating (before a clean exit deletes the key: no beat may land after it)."""
        self._stopping.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)

    def _run(self) -> None:
        asyncio.run(self._beat())

    async def _beat(self) -> None:
        bus: Bus | None = None
        try:
            while not self._stopping.is_set():
                try:
                    if bus is None:
                        bus = await Bus.connect(self.settings, f"{self.name}-beacon")
                    kv = await bus.js.key_value(self.bucket)
                    break
                except Exception as exc:  # NATS or the bucket not there yet
                    log.warning("beacon not connected yet: %s", exc)
                    await asyncio.sleep(self.every_s)
            while not self._stopping.is_set():
                if time.monotonic() - self._ticked < self.stall_s:  # else: wedged, silent
                    with contextlib.suppress(Exception):  # NATS away: the next beat tries
                        await kv.put(self.key, json.dumps({"t": time.time(),
                                                           **self.state()}).encode())
                await asyncio.sleep(self.every_s)
        finally:
            if bus is not None:
                with contextlib.suppress(Exception):
                    await bus.nc.close()
