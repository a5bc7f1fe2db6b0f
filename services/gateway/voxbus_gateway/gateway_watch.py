"""Gateway replica loss: the calls a dead gateway owned end cleanly.

Every gateway beats `gateway.<name>` in the vb_calls bucket, next to its call claims
(`<call_id>` = its name), from a beacon thread (beacon.py): a gateway whose event loop is
busy with many calls is not taken for dead, and one whose loop is wedged falls silent.
When one stops beating, the surviving gateways race to take over each of its claims with a
revision-checked update; the winner publishes Ending and Ended for the call, so STT flushes
and stops, the call's turns stay saved in memory with the end recorded ("gateway lost"),
and the claim is freed. The caller's connection went down with the gateway: a carrier or
client reconnects as a new call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from voxbus.v1.call_pb2 import CallEvent
from voxbus_common import subjects
from voxbus_common.beacon import Beacon
from voxbus_common.bus import Bus
from voxbus_common.config import CoreSettings
from voxbus_common.ids import kv_token
from voxbus_gateway.liveness import Heartbeats

log = logging.getLogger(__name__)

REASON = "gateway lost"


class GatewayWatch:
    def __init__(self, bus: Bus, settings: CoreSettings, gateway_id: str,
                 lease_s: float) -> None:
        self.bus = bus
        self.me = kv_token(gateway_id)
        self.lease_s = lease_s
        self.kv: KeyValue | None = None
        self.beats: Heartbeats | None = None
        self.beacon = Beacon(settings, bus.name, subjects.CALLS_BUCKET, f"gateway.{self.me}",
                             lease_s / 3, dict)
        self._ticking: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.kv = await self.bus.calls_kv()
        self.beats = Heartbeats(self.bus, self.kv, "gateway", self.lease_s, self._orphaned,
                                ignore=self.me)
        await self.beats.start()
        self.beacon.start()
        self._ticking = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        """The event loop still turns: the beacon may go on beating."""
        while True:
            self.beacon.tick()
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
        if self._ticking is not None:
            self._ticking.cancel()
            await self.beacon.stop()  # before the key goes: no beat may land after it
        if self.beats is not None:
            await self.beats.stop()
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await self.kv.delete(f"gateway.{self.me}")
