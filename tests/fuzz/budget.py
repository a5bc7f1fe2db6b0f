"""Example budgets of the fuzz targets and a bounded runner for the async ones.

Each target states its CI example count (`examples(n)`); `HYPOTHESIS_PROFILE=long` multiplies
every count (50x, or VOXBUS_FUZZ_SCALE) for a longer campaign on a developer's machine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings

T = TypeVar("T")

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
SCALE = float(os.environ.get("VOXBUS_FUZZ_SCALE") or (50 if PROFILE == "long" else 1))
HANG_S = 20.0  # one example that does not finish within this is a hang, not slowness


def examples(n: int) -> settings:
    """Settings for one target: `n` examples in CI, scaled for longer campaigns."""
    return settings(max_examples=max(1, int(n * SCALE)))


def run_bounded(coro: Coroutine[Any, Any, T]) -> T:
    """Run one example's coroutine on a fresh loop; a hang fails with TimeoutError instead of
    blocking the suite (the bound is generous: it catches hangs, it does not time code)."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, HANG_S)

    return asyncio.run(bounded())
