"""Short-term memory compaction: when a call is summarized, what the summary covers, that a
summary never loses a concurrent turn nor goes back, and what a context reply holds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from tests.memory_fakes import FakeBus, FakeKV, FakeNc
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.llm_pb2 import SummarizeReply, SummarizeRequest
from voxbus.v1.memory_pb2 import Session, TurnRecord
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.config import Settings
from voxbus_memory.compaction import Compactor
from voxbus_memory.recorder import apply_event
from voxbus_memory.store import SessionStore
from voxbus_memory.summary import (
    apply_summary,
    context_messages,
    estimate_tokens,
    newest_messages,
    plan_summary,
)


def session(turns: int, words: int = 10, through: int = 0, summary: str = "") -> Session:
    s = Session(call_id="c", summary=summary, summarized_through=through)
    for turn in range(1, turns + 1):
        s.turns.append(TurnRecord(turn_id=turn, role="user", text=" ".join(["u"] * words)))
        s.turns.append(TurnRecord(turn_id=turn, role="assistant", text=" ".join(["a"] * words)))
    return s


def test_token_estimate_is_the_larger_of_words_and_characters() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("one two three four five six seven eight nine ten") == 13
    assert estimate_tokens("4111111111111111") == 4  # one "word", counted by length
    assert estimate_tokens("x" * 400) == 100


def test_within_budget_nothing_is_summarized() -> None:
    s = session(turns=3, words=10)  # 6 messages × 13 tokens = 78
    assert plan_summary(s, budget_tokens=100, keep_recent=2) is None
    assert plan_summary(s, budget_tokens=0, keep_recent=2) is None  # 0 = never


def test_over_budget_older_turns_are_summarized_and_recent_kept() -> None:
    s = session(turns=6, words=10)  # 12 messages, 156 tokens
    plan = plan_summary(s, budget_tokens=100, keep_recent=4)
    assert plan is not None
    assert plan.through == 4  # turns 5 and 6 (4 messages) stay verbatim
    assert len(plan.messages) == 8 and plan.messages[0].role == "user"


def test_cut_is_at_a_turn_boundary_and_never_the_newest_turn() -> None:
    s = session(turns=6, words=10)
    plan = plan_summary(s, budget_tokens=100, keep_recent=3)  # would split turn 5
    assert plan is not None and plan.through == 4
    plan = plan_summary(s, budget_tokens=100, keep_recent=0)
    assert plan is not None and plan.through == 5  # turn 6's agent record may be coming


def test_already_summarized_turns_are_not_sent_again() -> None:
    s = session(turns=10, words=10, through=4, summary="The caller is Ann.")
    plan = plan_summary(s, budget_tokens=100, keep_recent=4)
    assert plan is not None
    assert plan.previous_summary == "The caller is Ann."
    assert plan.through == 8 and len(plan.messages) == 8  # turns 5..8


def test_one_request_is_bounded_by_the_chunk_size() -> None:
    s = session(turns=20, words=10)
    plan = plan_summary(s, budget_tokens=100, keep_recent=2, max_chunk_tokens=60)
    assert plan is not None
    assert plan.through == 2  # 2 turns = 52 tokens; a third would pass 60
    plan = plan_summary(s, budget_tokens=100, keep_recent=2, max_chunk_tokens=1)
    assert plan is not None and plan.through == 1  # at least one turn


def test_summary_only_moves_forward() -> None:
    s = session(turns=6)
    assert apply_summary(s, 4, "First.")
    assert not apply_summary(s, 3, "Older.")
    assert not apply_summary(s, 4, "Same turn again.")
    assert not apply_summary(s, 5, "  ")
    assert (s.summary, s.summarized_through) == ("First.", 4)
    assert len(s.turns) == 12  # turns themselves are kept


def test_context_holds_only_what_the_summary_does_not_cover() -> None:
    s = session(turns=6, words=1, through=4, summary="Earlier.")
    msgs = context_messages(s, before_turn=7, limit=50)
    assert [(m.role, m.content) for m in msgs] == [
        ("user", "u"), ("assistant", "a"), ("user", "u"), ("assistant", "a")]
    assert len(context_messages(s, before_turn=6, limit=50)) == 2
    assert len(context_messages(s, before_turn=7, limit=3)) == 3


def test_closing_summary_input_is_the_newest_turns() -> None:
    s = session(turns=5, words=10, through=1)
    msgs = newest_messages(s, max_tokens=30)
    assert len(msgs) == 2 and msgs[-1].role == "assistant"
    assert len(newest_messages(s, max_tokens=1)) == 1


async def test_a_concurrent_turn_is_never_lost() -> None:
    kv = FakeKV()
    store = SessionStore(cast(Any, kv))
    kv.put_now("c", session(turns=6).SerializeToString())

    def concurrent_append() -> None:  # another replica stores turn 7 meanwhile
        current = Session()
        current.ParseFromString(kv.data["c"].value or b"")
        apply_event(current, CallEvent(meta=Meta(call_id="c", turn_id=7),
                                       user_turn=CallEvent.UserTurn(text="new")))
        kv.put_now("c", current.SerializeToString())

    kv.before_update = concurrent_append
    stored = await store.mutate("c", lambda s: apply_summary(s, 4, "Summary."))
    assert kv.conflicts == 1
    assert stored.summarized_through == 4 and stored.turns[-1].text == "new"
    again = await store.get("c")
    assert again is not None and again == stored


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"memory_summarize_tokens": 100, "memory_keep_recent": 4}
    return Settings(**{**base, **kw})


async def test_compactor_runs_in_background_once_per_call() -> None:
    kv = FakeKV()
    store = SessionStore(cast(Any, kv))
    kv.put_now("c", session(turns=6).SerializeToString())
    release = asyncio.Event()
    asked: list[SummarizeRequest] = []

    async def answer(subject: str, data: bytes) -> bytes:
        req = SummarizeRequest()
        req.ParseFromString(data)
        asked.append(req)
        await release.wait()
        return SummarizeReply(summary="The caller [phone] booked.").SerializeToString()

    compactor = Compactor(cast(Any, FakeBus(FakeNc(answer))), store, settings(),
                          redact=lambda t: t.replace("[phone]", "Ann"))
    s = await store.get("c")
    assert s is not None
    compactor.maybe_schedule(s)
    compactor.maybe_schedule(s)  # one in flight per call
    assert len(compactor.in_flight) == 1
    release.set()
    await asyncio.gather(*compactor.in_flight.values())
    stored = await store.get("c")
    assert stored is not None
    assert (stored.summarized_through, stored.summary) == (4, "The caller Ann booked.")
    assert len(asked) == 1 and asked[0].max_words == 60 and len(asked[0].messages) == 8
    assert not compactor.in_flight


async def test_compactor_failure_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    kv = FakeKV()
    store = SessionStore(cast(Any, kv))
    kv.put_now("c", session(turns=6).SerializeToString())

    async def answer(subject: str, data: bytes) -> bytes:
        return SummarizeReply(error="model down").SerializeToString()

    compactor = Compactor(cast(Any, FakeBus(FakeNc(answer))), store, settings(),
                          redact=lambda t: t)
    s = await store.get("c")
    assert s is not None
    with caplog.at_level(logging.WARNING):
        compactor.maybe_schedule(s)
        await asyncio.gather(*compactor.in_flight.values())
    assert "model down" in caplog.text
    stored = await store.get("c")
    assert stored is not None and stored.summarized_through == 0
    ended = Session()
    ended.CopyFrom(s)
    ended.ended_unix_ns = 1
    compactor.maybe_schedule(ended)  # an ended call is not summarized any more
    assert not compactor.in_flight


def test_the_context_window_slides_in_steps_so_its_start_stays_put() -> None:
    starts = []
    for turns in range(6, 16):  # 12 .. 30 messages, a limit of 12
        msgs = context_messages(session(turns=turns, words=1), before_turn=turns + 1, limit=12)
        assert 6 < len(msgs) <= 12
        starts.append(2 * turns - len(msgs))  # index of the first message kept
    assert starts == [0, 6, 6, 6, 12, 12, 12, 18, 18, 18]


async def test_a_summary_check_waits_for_a_quarter_of_the_budget() -> None:
    """The turns are in pages, so a check reads them: it runs once 25 of the 100-token
    budget were recorded since the last, not on every turn."""
    kv = FakeKV()
    store = SessionStore(cast(Any, kv))
    kv.put_now("c", session(turns=6).SerializeToString())

    async def answer(subject: str, data: bytes) -> bytes:
        return SummarizeReply(summary="Booked.").SerializeToString()

    compactor = Compactor(cast(Any, FakeBus(FakeNc(answer))), store, settings(),
                          redact=lambda t: t)
    s = await store.get("c")
    assert s is not None
    for _ in range(2):
        compactor.maybe_schedule(s, tokens=12)
    assert not compactor.in_flight  # 24 tokens: not yet
    compactor.maybe_schedule(s, tokens=1)
    assert len(compactor.in_flight) == 1
    await asyncio.gather(*compactor.in_flight.values())
    stored = await store.get("c")
    assert stored is not None and stored.summary == "Booked."
