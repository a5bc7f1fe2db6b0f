"""Crash failover for STT: liveness and checkpoints in the vb_stt KV bucket.

Every replica puts `replica.<name>` every heartbeat. For each call it owns it writes
`call.<call_id>` = {owner, seq, after} every second: where another replica would carry on.
A new owner takes the key over with a plain put; from then on each owner writes with a
revision check, so an old owner that comes back (a partition, a stall) finds the key moved
and stops: there are never two owners. The gateway watches the heartbeats and re-announces
a dead replica's calls with their checkpoint (services/gateway/voxbus_gateway/stt_watch.py).
"""

from __future__ import annotations

import json
import logging
import time

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from voxbus_common.ids import kv_token

log = logging.getLogger(__name__)


def replica_key(name: str) -> str:
    return f"replica.{kv_token(name)}"


def call_key(call_id: str) -> str:
    return f"call.{call_id}"


class CallLease:
    """This replica's claim on one call, with its latest checkpoint."""

    def __init__(self, kv: KeyValue, call_id: str, owner: str) -> None:
        self.kv = kv
        self.call_id = call_id
        self.owner = kv_token(owner)  # as in its heartbeat key: what gateways compare
        self.revision: int | None = None
        self._last: tuple[int, int] | None = None

    async def write(self, seq: int, after: int) -> bool:
        """Record the checkpoint; False when another replica has taken the call over."""
        if self.revision is not None and (seq, after) == self._last:
            return True  # nothing new: the heartbeat says this owner is alive
        value = json.dumps({"owner": self.owner, "seq": seq, "after": after,
                            "t": time.time()}).encode()
        key = call_key(self.call_id)
        try:
            if self.revision is None:  # taking the call (over): the newest owner wins
                self.revision = await self.kv.put(key, value)
            else:
                self.revision = await self.kv.update(key, value, last=self.revision)
        except KeyWrongLastSequenceError:
            mine = await self._still_mine()
            if mine is False:
                log.warning("another replica owns this call now: stopping here")
                return False
            return True  # our own write moved it (or unreadable now): written next round
        self._last = (seq, after)
        return True

    async def _still_mine(self) -> bool | None:
        """The key moved: by another owner (False), or by this one's own write whose answer
        was lost, a NATS node going down between storing it and replying (True: its
        revision is taken up). None: unreadable now, which proves nothing either way."""
        try:
            entry = await self.kv.get(call_key(self.call_id))
            owner = json.loads(entry.value or b"{}").get("owner")
        except Exception as exc:
            log.warning("call lease unreadable (%s); checked again next round", exc)
            return None
        if owner != self.owner:
            return False
        self.revision = int(entry.revision or 0)
        return True

    async def release(self) -> None:
        """The call ended here: nobody needs to carry it on."""
        if self.revision is not None:
            try:
                await self.kv.delete(call_key(self.call_id), last=self.revision)
            except Exception as exc:  # a newer owner, or NATS gone: nothing to undo
                log.debug("lease not released: %s", exc)
