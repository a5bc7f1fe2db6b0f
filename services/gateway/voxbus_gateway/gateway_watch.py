"""Gateway replica loss: the calls a dead gateway owned end cleanly.

Every gateway beats `gateway.<name>` in the vb_calls bucket, next to its call claims
(`<call_id>` = its name). When one stops beating, the surviving gateways race to take over
each of its claims with a revision-checked update; the winner publishes Ending and Ended
for the call, so STT flushes and stops, the call's turns stay saved in memory with the end
recorded ("gateway lost"), and the claim is freed. The caller's connection went down with
the gateway: a carrier or client reconnects as a new call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from voxbus.v1.call_pb2 import CallEvent
from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_common.ids import kv_token
from voxbus_gateway.liveness import Heartbeats

log = logging.getLogger(__name__)

REASON = "gateway lost"


class GatewayWatch:
    def __init__(self, bus: Bus, gateway_id: str, lease_s: float) -> None:
        self.bus = bus
        self.me = kv_token(gateway_id)
        self.lease_s = lease_s
        self.kv: KeyValue | None = None
        self.beats: Heartbeats | None = None
        self._beating: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.kv = await self.bus.calls_kv()
        self.beats = Heartbeats(self.bus, self.kv, "gateway", self.lease_s, self._orphaned,
                                ignore=self.me)
        await self.beats.start()
        self._beating = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        assert self.kv is not None
        while True:
            with contextlib.suppress(Exception):  # NATS away: the next beat tries again
                await self.kv.put(f"gateway.{self.me}", json.dumps({"t": time.time()}).encode())
            await asyncio.sleep(self.lease_s / 3)

    async def _orphaned(self, dead: str) -> None:
        assert self.kv is not None
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return
        for key in keys:
            if key.startswith("gateway."):
                continue
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue
            if kv_token((entry.value or b"").decode(errors="replace")) != dead:
                continue
            try:  # one survivor ends each call
                await self.kv.update(key, f"ending:{self.me}".encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            await self._end(key)
            with contextlib.suppress(Exception):
                await self.kv.delete(key)

    async def _end(self, call_id: str) -> None:
        subject = subjects.control(call_id)
        for kind in ({"ending": CallEvent.Ending(reason=REASON)},
                     {"ended": CallEvent.Ended(reason=REASON)}):
            await self.bus.publish_acked(subject, CallEvent(
                meta=self.bus.meta(call_id, 0, subject), **kind))
        log.warning("call of a lost gateway ended", extra={"call_id": call_id})

    async def stop(self) -> None:
        """A clean exit: the others must not end calls this gateway drained itself."""
        if self._beating is not None:
            self._beating.cancel()
        if self.beats is not None:
            await self.beats.stop()
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await self.kv.delete(f"gateway.{self.me}")
