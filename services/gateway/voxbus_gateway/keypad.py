"""Keypad input: DTMF digits collected into one entry, ended by '#' or a quiet pause."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class KeypadCollector:
    def __init__(self, timeout_s: float,
                 on_entry: Callable[[list[str]], Awaitable[None]]) -> None:
        self.timeout_s = timeout_s
        self.on_entry = on_entry
        self._digits: list[str] = []
        self._timer: asyncio.Task[None] | None = None

    async def add(self, digit: str) -> None:
        self._digits.append(digit)
        self.cancel()
        if digit == "#":
            await self._flush()
        else:
            self._timer = asyncio.create_task(self._flush_later())

    def cancel(self) -> None:
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.timeout_s)
        await self._flush()

    async def _flush(self) -> None:
        digits, self._digits = self._digits, []
        if digits:
            await self.on_entry(digits)
