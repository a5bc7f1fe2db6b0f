"""Stale-work filtering by turn id (the bus's cancellation model).

The owning gateway publishes CancelTurn(turn_id=N) or Ended on a call's control subject.
From then on every message of that call with turn_id <= N (or any turn, after Ended) is
stale, wherever it arrives. Monotonic ids make this race-free without locks or acks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from nats.aio.msg import Msg

from voxbus.v1.call_pb2 import CallEvent
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.subjects import CONTROL_ALL

log = logging.getLogger(__name__)

ENDED = 2**32  # greater than any turn id
# Ended calls remembered, for their late work (a redelivery seconds after the end). Live
# calls' cancels are kept apart, so this bound never drops a live call's; 20,000 ended
# calls kept before cost ~150 bytes per call for the first 20,000 (bench/leak.py).
ENDED_KEPT = 2000


class StaleTurns:
    """Remembers, per live call, the highest cancelled turn, and the calls that ended
    lately (both bounded)."""

    def __init__(self, max_calls: int = 20000, ended_kept: int = ENDED_KEPT) -> None:
        self._cancelled: OrderedDict[str, int] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._ended_kept = ended_kept
        self._max_calls = max_calls
        self._final: OrderedDict[str, int] = OrderedDict()  # highest turn with a final transcript
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def observe(self, event: CallEvent) -> None:
        """Feed every CallEvent of the control subjects."""
        kind = event.WhichOneof("kind")
        call_id = event.meta.call_id
        if kind == "cancel_turn":
            self.cancel(call_id, event.meta.turn_id)
        elif kind in ("ended", "ending"):
            self.cancel(call_id, ENDED)
            self._final.pop(call_id, None)
        elif kind == "user_turn":
            self._final[call_id] = max(self._final.get(call_id, 0), event.meta.turn_id)
            self._final.move_to_end(call_id)
            if len(self._final) > self._max_calls:
                self._final.popitem(last=False)
            self._notify(call_id)

    def cancel(self, call_id: str, up_to_turn: int) -> None:
        if up_to_turn >= ENDED or call_id in self._ended:
            self._cancelled.pop(call_id, None)
            self._ended[call_id] = None
            self._ended.move_to_end(call_id)
            while len(self._ended) > self._ended_kept:
                self._ended.popitem(last=False)
            self._notify(call_id)
            return
        current = self._cancelled.get(call_id, 0)
        self._cancelled[call_id] = max(current, up_to_turn)
        self._cancelled.move_to_end(call_id)
        while len(self._cancelled) > self._max_calls:
            self._cancelled.popitem(last=False)
        self._notify(call_id)

    def _notify(self, call_id: str) -> None:
        for waiter in self._waiters.get(call_id, ()):
            waiter.set()

    async def until_stale(self, call_id: str, turn_id: int) -> None:
        """Return once the turn is cancelled (for work that must stop at once: tools)."""
        await self._until(call_id, lambda: self.is_stale(call_id, turn_id))

    async def until_final(self, call_id: str, turn_id: int) -> bool:
        """Wait until a preemptive turn is confirmed by its final transcript (True) or
        cancelled (False)."""
        await self._until(call_id, lambda: self.is_stale(call_id, turn_id) or (
            self._final.get(call_id, 0) >= turn_id))
        return not self.is_stale(call_id, turn_id)

    async def _until(self, call_id: str, done: Callable[[], bool]) -> None:
        waiter = asyncio.Event()
        self._waiters.setdefault(call_id, set()).add(waiter)
        try:
            while not done():
                await waiter.wait()
                waiter.clear()
        finally:
            waiters = self._waiters.get(call_id, set())
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(call_id, None)

    def is_stale(self, call_id: str, turn_id: int) -> bool:
        return call_id in self._ended or turn_id <= self._cancelled.get(call_id, 0)

    async def follow(self, bus: Bus) -> None:
        """Keep this tracker current from every call's control subject (and let the bus
        forget an ended call's sequence counters, so long-lived workers stay bounded)."""

        async def on_control(msg: Msg) -> None:
            try:
                event = decode(CallEvent, msg.data)
            except BadMessage as exc:
                log.warning("bad control event: %s", exc)
                return
            self.observe(event)
            if event.WhichOneof("kind") == "ended":
                bus.forget_subjects(event.meta.call_id)

        await bus.subscribe(CONTROL_ALL, on_control)
