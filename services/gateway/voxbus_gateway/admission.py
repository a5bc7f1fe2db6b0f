"""Admission under floods: a call-attempt rate per source address and a cap on unconfirmed
calls per edge.

A call is *unconfirmed* from its first byte until its protocol confirms it: SIP by the ACK
of our 200 OK, WebSocket carriers by their start message, AudioSocket by its UUID frame.
Until then it costs a socket and a timer, never a greeting or an STT session (app.py), so a
flood of calls that never confirm cannot slow the calls that did. The caps bound how many
sockets and timers such a flood holds, per edge and per source address (so one flooding
address cannot fill an edge for everybody else); the rate bounds how fast one source can
churn them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

MAX_TRACKED = 10000  # source addresses remembered (then forgotten at once: fail open)


class TokenBuckets:
    """A token bucket per key: `burst` at once, `rate_per_s` sustained; rate 0 = no limit."""

    def __init__(self, rate_per_s: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = max(1.0, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= MAX_TRACKED and key not in self._buckets:
            self._buckets.clear()
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True


class Admission:
    """The gateway's front door (one per gateway replica, shared by every edge)."""

    def __init__(self, rate_per_s: float, burst: float, max_unconfirmed: int,
                 max_unconfirmed_per_source: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = TokenBuckets(rate_per_s, burst, clock)
        self.max_unconfirmed = max_unconfirmed
        self.max_per_source = max_unconfirmed_per_source
        self.unconfirmed: Counter[str] = Counter()  # by edge
        self.by_source: Counter[str] = Counter()

    def source_refusal(self, source: str) -> str:
        """"" when `source` may start another call now, else why not."""
        if self.attempts.take(source or "?"):
            return ""
        return "too many call attempts from this address; retry shortly"

    def full(self, edge: str, source: str = "") -> bool:
        """No room for another unconfirmed call on `edge` from `source` (0 = no cap)."""
        return (0 < self.max_unconfirmed <= self.unconfirmed[edge]
                or 0 < self.max_per_source <= self.by_source[source])

    def enter(self, edge: str, source: str = "") -> bool:
        """Count a call being set up; False (not counted) when there is no room."""
        if self.full(edge, source):
            return False
        self.unconfirmed[edge] += 1
        self.by_source[source] += 1
        return True

    def leave(self, edge: str, source: str = "") -> None:
        """The call was confirmed, or gave up before it was."""
        for counter, key in ((self.unconfirmed, edge), (self.by_source, source)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
