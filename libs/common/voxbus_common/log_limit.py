"""Warning budgets: a peer that sends garbage must not get to write our logs.

One budget per connection (or one per process with `refill`): the first `limit` warnings are
logged, then one "further warnings suppressed" line, then at most one summary per `interval_s`
with the count suppressed since the last line. Summaries are written when the next warning
arrives (no timers, no threads) and by `flush()` when the connection ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_LIMIT = 10  # warnings of one connection logged in full
DEFAULT_INTERVAL_S = 60.0  # then at most one summary line per interval


class WarningBudget:
    """Counts warnings of one source and logs only a bounded number of lines for them."""

    def __init__(self, logger: logging.Logger, limit: int = DEFAULT_LIMIT,
                 interval_s: float = DEFAULT_INTERVAL_S, *, refill: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 extra: Mapping[str, Any] | None = None) -> None:
        """`refill`: a long-lived (process-wide) budget gets `limit` full lines again once an
        interval has passed since its notice; `extra`: fields on every line (edge, peer)."""
        if limit < 0 or interval_s <= 0:
            raise ValueError("limit must be >= 0 and interval_s > 0")
        self.logger = logger
        self.limit = limit
        self.interval_s = interval_s
        self.refill = refill
        self.clock = clock
        self.extra: dict[str, Any] = dict(extra or {})
        self.logged = 0  # full lines written (since the last refill)
        self.suppressed = 0  # not yet reported in a summary
        self.suppressed_total = 0
        self._noticed = False
        self._reported_at = 0.0

    def admit(self) -> bool:
        """True: log this warning in full now; False: it is counted (and reported later)."""
        now = self.clock()
        if self._noticed and now - self._reported_at >= self.interval_s:
            self._summary(now)
            if self.refill:
                self.logged, self._noticed = 0, False
        if self.logged < self.limit:
            self.logged += 1
            return True
        self.suppressed += 1
        self.suppressed_total += 1
        if not self._noticed:
            self._noticed, self._reported_at = True, now
            self.logger.warning("further warnings suppressed",
                                extra={**self.extra, "limit": self.limit,
                                       "summary_every_s": self.interval_s})
        return False

    def warning(self, msg: str, *args: object, extra: Mapping[str, Any] | None = None) -> None:
        """logger.warning(msg, *args) within the budget."""
        if self.admit():
            self.logger.warning(msg, *args, extra={**self.extra, **(extra or {})},
                                stacklevel=2)

    def flush(self) -> None:
        """The source is done (connection closed): report what is still unreported."""
        if self.suppressed:
            self._summary(self.clock())

    def _summary(self, now: float) -> None:
        if self.suppressed:
            self.logger.warning("warnings suppressed",
                                extra={**self.extra, "suppressed": self.suppressed,
                                       "over_s": round(now - self._reported_at, 1)})
        self.suppressed, self._reported_at = 0, now
