"""The fallback chain: next model on an error or a silent start, never mid-answer."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm.fallback import FallbackChat

ASK = [ChatTurn("user", "hi")]


class Scripted:
    """A chat model double: fails, stalls or answers as told."""

    def __init__(self, name: str, words: list[str], fail_at: int = -1,
                 stall: bool = False) -> None:
        self.name, self.words, self.fail_at, self.stall = name, words, fail_at, stall
        self.calls = 0

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        self.calls += 1
        if self.stall:
            await asyncio.Event().wait()  # never answers; the chain's timeout cancels it
        for i, word in enumerate(self.words):
            if i == self.fail_at:
                raise ConnectionError(f"{self.name} dropped")
            yield word


async def collect(chain: FallbackChat) -> list[str | ToolCall]:
    return [d async for d in chain.stream(ASK)]


async def test_primary_answers() -> None:
    second = Scripted("b", ["no"])
    assert await collect(FallbackChat([Scripted("a", ["hi ", "there"]), second], 5)) == [
        "hi ", "there"]
    assert second.calls == 0


async def test_error_before_first_token_falls_over() -> None:
    chain = FallbackChat([Scripted("a", ["x"], fail_at=0), Scripted("b", ["ok"])], 5)
    assert await collect(chain) == ["ok"]


async def test_silent_primary_times_out_to_the_secondary() -> None:
    chain = FallbackChat([Scripted("a", [], stall=True), Scripted("b", ["ok"])], 0.05)
    assert await collect(chain) == ["ok"]


async def test_failure_mid_answer_is_not_continued_by_another_model() -> None:
    second = Scripted("b", ["other"])
    chain = FallbackChat([Scripted("a", ["half ", "way"], fail_at=1), second], 5)
    with pytest.raises(ConnectionError, match="a dropped"):
        await collect(chain)
    assert second.calls == 0


async def test_all_failing_raises_the_last_error() -> None:
    chain = FallbackChat([Scripted("a", ["x"], fail_at=0), Scripted("b", ["y"], fail_at=0)], 5)
    with pytest.raises(ConnectionError, match="b dropped"):
        await collect(chain)


def test_configured_from_settings() -> None:
    from voxbus_llm.__main__ import make_model

    plain = make_model(Settings(llm_base_url="http://127.0.0.1:9/v1"))
    assert not isinstance(plain, FallbackChat)
    chain = make_model(Settings(llm_base_url="http://127.0.0.1:9/v1",
                                llm_fallback_base_url="http://127.0.0.1:10/v1",
                                llm_fallback_model="backup"))
    assert isinstance(chain, FallbackChat)
    assert [m.name for m in chain.models] == ["smollm2-135m-instruct", "backup"]
