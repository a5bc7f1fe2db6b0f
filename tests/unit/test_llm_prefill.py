"""The LLM worker's prefill hints: the caller's words so far reach the model as the turn's
prompt, one evaluation per call at a time, and words that arrive meanwhile replace each
other (only the newest is evaluated next)."""

from __future__ import annotations

import asyncio
from typing import Any

from voxbus.v1.llm_pb2 import LlmPrefill, LlmRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn
from voxbus_llm.worker import LlmWorker


class NoMemory:
    """A bus whose memory never answers: the turn goes on without history."""

    class nc:  # (stands in for the NATS client)
        @staticmethod
        async def request(*_: Any, **__: Any) -> Any:
            raise TimeoutError

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id)

    async def publish(self, *_: Any, **__: Any) -> None:
        return None

    async def publish_acked(self, *_: Any, **__: Any) -> None:
        return None


class CachingModel:
    name = "fake"

    def __init__(self) -> None:
        self.prefilled: list[list[ChatTurn]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def stream(self, messages: list[ChatTurn], tools: Any = None) -> Any:
        yield "We open at noon."

    async def warm(self, messages: list[ChatTurn], tools: Any) -> None:
        return None

    async def prefill(self, messages: list[ChatTurn], tools: Any) -> None:
        self.prefilled.append(messages)
        self.started.set()
        await self.release.wait()


class Hint:
    def __init__(self, call_id: str, text: str) -> None:
        self.data = LlmPrefill(meta=Meta(call_id=call_id, turn_id=3),
                               user_text=text).SerializeToString()


async def test_hints_while_one_is_evaluated_collapse_into_the_newest() -> None:
    model = CachingModel()
    worker = LlmWorker(NoMemory(), Settings(system_prompt="Be brief."), model)  # type: ignore[arg-type]
    await worker.on_prefill(Hint("c1", "I would"))  # type: ignore[arg-type]
    await asyncio.wait_for(model.started.wait(), 10)
    for text in ("I would like", "I would like a table", "I would like a table for two"):
        await worker.on_prefill(Hint("c1", text))  # type: ignore[arg-type]
    model.release.set()
    await asyncio.wait_for(asyncio.gather(*worker._prefilling.values()), 10)
    said = [m[-1].content for m in model.prefilled]
    assert said == ["I would", "I would like a table for two"]
    first = model.prefilled[0]
    assert first[0].role == "system" and first[0].content.startswith("Be brief.")
    assert first[-1].role == "user"


async def test_hints_are_ignored_when_turned_off_or_empty() -> None:
    model = CachingModel()
    off = LlmWorker(NoMemory(), Settings(llm_prefill=False), model)  # type: ignore[arg-type]
    await off.on_prefill(Hint("c2", "hello there"))  # type: ignore[arg-type]
    on = LlmWorker(NoMemory(), Settings(), model)  # type: ignore[arg-type]
    await on.on_prefill(Hint("c3", "   "))  # type: ignore[arg-type]
    assert not off._prefilling and not on._prefilling and model.prefilled == []


async def test_after_a_reply_the_conversation_with_it_is_evaluated_for_the_next_turn() -> None:
    model = CachingModel()
    model.release.set()
    worker = LlmWorker(NoMemory(), Settings(), model)  # type: ignore[arg-type]
    turn = [ChatTurn("system", "S"), ChatTurn("user", "When do you open?")]
    await worker._generate(LlmRequest(meta=Meta(call_id="c4", turn_id=5)), turn)
    await asyncio.wait_for(asyncio.gather(*worker._prefilling.values()), 10)
    [prompt] = model.prefilled
    assert prompt == [*turn, ChatTurn("assistant", "We open at noon.")]
