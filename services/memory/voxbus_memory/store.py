"""Protobuf records over JetStream KV with revision-checked (compare-and-set) updates.

Several memory replicas (and background summaries within one) may write the same key; an
update that lost the race re-reads and re-applies, so no turn record or note is lost or
duplicated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from google.protobuf.message import Message
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from voxbus.v1.memory_pb2 import CallerMemory, Session
from voxbus_common.bus import decode
from voxbus_common.session_pages import call_of, page_key, page_of, read_session

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


class ProtoStore(Generic[M]):
    """One protobuf message per key; `new(key)` is the value of a key never written."""

    def __init__(self, kv: KeyValue, msg_type: type[M], new: Callable[[str], M],
                 reads: KeyValue | None = None) -> None:
        self.kv = kv
        self.reads = reads or kv  # any replica of the bucket answers (Bus.direct_reads)
        self.msg_type = msg_type
        self.new = new

    async def get(self, key: str) -> M | None:
        """The value as the bucket's leader has it (before a change, or a purge)."""
        return await self._get(self.kv, key)

    async def read(self, key: str) -> M | None:
        """The value as any replica of the bucket has it: it may lag the leader by a few
        milliseconds, and it is there while the bucket elects a leader (a node lost),
        for reads on the turn's path that only inform."""
        return await self._get(self.reads, key)

    async def _get(self, kv: KeyValue, key: str) -> M | None:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return decode(self.msg_type, entry.value)

    async def purge(self, key: str) -> bool:
        """Remove the key and its history; False if it did not exist."""
        if await self.get(key) is None:
            return False
        await self.kv.purge(key)
        return True

    async def mutate(self, key: str, change: Callable[[M], bool], attempts: int = 20) -> M:
        """Apply `change` (returns False for "nothing to do") with optimistic concurrency."""
        for _ in range(attempts):
            try:
                entry = await self.kv.get(key)
                value = decode(self.msg_type, entry.value or b"")
                revision: int | None = entry.revision
            except KeyNotFoundError:
                value = self.new(key)
                revision = None
            if not change(value):
                return value
            data = value.SerializeToString()
            try:
                if revision is None:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=revision)
                return value
            except (KeyWrongLastSequenceError, Exception) as exc:
                if "wrong last sequence" not in str(exc).lower() and not isinstance(
                        exc, KeyWrongLastSequenceError):
                    raise
                log.debug("kv update raced; retrying", extra={"key": key})
        raise RuntimeError(f"could not update {key} after {attempts} attempts")


class SessionStore(ProtoStore[Session]):
    """Each call's session: a header keyed by call id and bounded pages of turns
    (voxbus_common/session_pages.py). `get`/`read`/`mutate` of a call id are the header's;
    `whole`/`turns` assemble the turns from their pages; `append` writes one page."""

    def __init__(self, kv: KeyValue, reads: KeyValue | None = None) -> None:
        super().__init__(kv, Session, lambda key: Session(call_id=call_of(key)), reads)

    async def append(self, call_id: str, turn_id: int,
                     change: Callable[[Session], bool]) -> Session:
        """Apply `change` to the page of `turn_id`, then make sure the header knows that
        page (a redelivery after a crash between the two writes finishes the second)."""
        page = page_of(turn_id)
        await self.mutate(page_key(call_id, page), change)
        return await self.mutate(call_id, lambda header: _knows_page(header, page))

    async def whole(self, call_id: str, from_turn: int | None = 0) -> Session | None:
        """The call as one message, from the bucket's leader (summaries, the end); see
        read_session for `from_turn`."""
        return await read_session(self.kv, call_id, from_turn=from_turn)

    async def turns(self, call_id: str, from_turn: int | None = 0,
                    before_turn: int | None = None) -> Session | None:
        """The header and the pages of the turns in range, from any replica of the bucket
        (the turn's path: the context of one turn)."""
        return await read_session(self.reads, call_id, from_turn=from_turn,
                                  before_turn=before_turn)

    async def purge(self, key: str) -> bool:
        """The header and every page of the call."""
        header = await self.get(key)
        if header is None:
            return False
        for page in range(header.pages):
            with contextlib.suppress(KeyNotFoundError):
                await self.kv.purge(page_key(key, page))
        await self.kv.purge(key)
        return True


def _knows_page(header: Session, page: int) -> bool:
    if page < header.pages:
        return False
    header.pages = page + 1  # (a new header is written here too: its count was 0)
    return True


class CallerStore(ProtoStore[CallerMemory]):
    """Long-term memory per caller, keyed by callers.caller_key(identity)."""

    def __init__(self, kv: KeyValue, reads: KeyValue | None = None) -> None:
        super().__init__(kv, CallerMemory, lambda key: CallerMemory(), reads)
