"""Session store over JetStream KV with revision-checked (compare-and-set) updates.

Several memory replicas may write the same call; an update that lost the race re-reads
and re-applies, so no turn record is lost or duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from voxbus.v1.memory_pb2 import Session
from voxbus_common.bus import decode

log = logging.getLogger(__name__)


class SessionStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, call_id: str) -> Session | None:
        try:
            entry = await self.kv.get(call_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return decode(Session, entry.value)

    async def mutate(self, call_id: str, change: Callable[[Session], bool],
                     attempts: int = 20) -> Session:
        """Apply `change` (returns False for "nothing to do") with optimistic concurrency."""
        for _ in range(attempts):
            try:
                entry = await self.kv.get(call_id)
                session = decode(Session, entry.value or b"")
                revision: int | None = entry.revision
            except KeyNotFoundError:
                session = Session(call_id=call_id)
                revision = None
            if not change(session):
                return session
            data = session.SerializeToString()
            try:
                if revision is None:
                    await self.kv.create(call_id, data)
                else:
                    await self.kv.update(call_id, data, last=revision)
                return session
            except (KeyWrongLastSequenceError, Exception) as exc:
                if "wrong last sequence" not in str(exc).lower() and not isinstance(
                        exc, KeyWrongLastSequenceError):
                    raise
                log.debug("session update raced; retrying", extra={"call_id": call_id})
        raise RuntimeError(f"could not update session {call_id} after {attempts} attempts")
