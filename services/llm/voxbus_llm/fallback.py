"""A fallback chain of chat models: primary, then secondary, on an error or a slow start.

A model is given up only before its first token: an answer the caller has started to hear is
never continued by another model (it would not match), so a failure after that ends the turn
as any generation failure does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from voxbus_common.metrics import ERRORS
from voxbus_common.providers import ChatModel, ChatTurn, ToolCall

log = logging.getLogger(__name__)


class FallbackChat:
    """ChatModel over several; `first_token_timeout_s` bounds each one's silence."""

    def __init__(self, models: list[ChatModel], first_token_timeout_s: float) -> None:
        if not models:
            raise ValueError("a fallback chain needs at least one model")
        self.models = models
        self.name = models[0].name
        self.first_token_timeout_s = first_token_timeout_s

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        failure: BaseException | None = None
        for index, model in enumerate(self.models):
            deltas = model.stream(messages, tools)
            try:
                first = await asyncio.wait_for(anext(deltas), self.first_token_timeout_s)
            except StopAsyncIteration:
                return  # an empty answer is an answer
            except Exception as exc:
                failure = exc
                ERRORS.labels("llm", "model_fallback").inc()
                nxt = self.models[index + 1].name if index + 1 < len(self.models) else "none"
                log.warning("model %s failed before its first token (%s); next: %s",
                            model.name, type(exc).__name__, nxt)
                with contextlib.suppress(Exception):
                    await deltas.aclose()  # type: ignore[attr-defined]
                continue
            yield first
            async for delta in deltas:
                yield delta
            return
        assert failure is not None
        raise failure
