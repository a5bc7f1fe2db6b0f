"""Silence on the line: re-prompt once after a while, hang up after longer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def watch_idle(
    *,
    reprompt_s: float,
    hangup_s: float,
    busy: Callable[[], bool],
    last_activity: Callable[[], float],
    touch: Callable[[], None],
    reprompt: Callable[[], Awaitable[None]],
    hangup: Callable[[], None],
    ended: Callable[[], bool],
) -> None:
    """Poll twice a second; `busy()` (agent talking, caller speaking) resets the clock."""
    reprompted_for = -1.0
    while not ended():
        await asyncio.sleep(0.5)
        if busy():
            touch()
            continue
        since = last_activity()
        idle = time.monotonic() - since
        if idle >= hangup_s:
            log.info("idle timeout: hanging up")
            hangup()
            return
        if idle >= reprompt_s and reprompted_for != since:
            reprompted_for = since
            await reprompt()
