"""One gateway per call id across all replicas (session isolation): a gateway claims a call
id in the vb_calls bucket before the call starts (a create, so one owner), and a second
connection with a live call's id is refused wherever it lands. Gateway loss reads the same
claims (gateway_watch.py)."""

from __future__ import annotations

import contextlib

from nats.js.errors import KeyWrongLastSequenceError

from voxbus_common.bus import Bus
from voxbus_gateway.edges.base import ProtocolViolation


class CallClaims:
    def __init__(self, bus: Bus, gateway_id: str) -> None:
        self.bus = bus
        self.value = gateway_id.encode()
        # claimed here and not released: a retried create finds this gateway's own name in
        # the bucket and takes it as its own, so a second connection must be refused here
        self._held: set[str] = set()

    async def claim(self, call_id: str) -> None:
        """Raises ProtocolViolation when the call is live elsewhere (or here), and the bus's
        error when the bucket did not answer through a leader election (Bus.create_key)."""
        if call_id in self._held:
            raise ProtocolViolation(f"call {call_id} is already connected")
        self._held.add(call_id)
        try:
            await self.bus.create_key(await self.bus.calls_kv(), call_id, self.value)
        except KeyWrongLastSequenceError:
            self._held.discard(call_id)
            raise ProtocolViolation(f"call {call_id} is already connected") from None
        except BaseException:
            self._held.discard(call_id)
            raise

    async def release(self, call_id: str) -> None:
        self._held.discard(call_id)
        with contextlib.suppress(Exception):  # (expires with the bucket's TTL otherwise)
            await (await self.bus.calls_kv()).delete(call_id)
