"""A call's session in bounded pages: a turn event rewrites one page of at most
PAGE_TURNS turns (not the whole call), a redelivered event changes nothing, a late one
lands in order, and readers get the same session as before pages."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from tests.memory_fakes import FakeKV
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.memory_pb2 import Session, TurnRecord
from voxbus_common.session_pages import PAGE_TURNS, merged, page_key, read_session
from voxbus_memory.recorder import apply_event
from voxbus_memory.store import SessionStore
from voxbus_memory.summary import apply_summary

CALL = "call-pages"


def user_turn(turn_id: int, text: str) -> CallEvent:
    event = CallEvent()
    event.meta.call_id, event.meta.turn_id = CALL, turn_id
    event.user_turn.text = text
    return event


def agent_turn(turn_id: int, text: str) -> CallEvent:
    event = CallEvent()
    event.meta.call_id, event.meta.turn_id = CALL, turn_id
    event.agent_turn.heard_text = text
    return event


class CountingKV(FakeKV):
    """Remembers the size of every value written: what each event costs."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, int]] = []

    async def create(self, key: str, value: bytes) -> int:
        self.written.append((key, len(value)))
        return await super().create(key, value)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        self.written.append((key, len(value)))
        return await super().update(key, value, last)


async def record(store: SessionStore, event: CallEvent) -> Session:
    return await store.append(CALL, event.meta.turn_id,
                              lambda s: apply_event(s, event))


def test_a_long_call_writes_bounded_pages() -> None:
    async def run() -> None:
        kv = CountingKV()
        store = SessionStore(cast(Any, kv))
        for turn in range(1, 201):
            await record(store, user_turn(turn, f"question {turn} " * 5))
            await record(store, agent_turn(turn, f"answer {turn} " * 5))
        biggest = max(size for key, size in kv.written if key != CALL)
        early = max(size for key, size in kv.written[:40] if key != CALL)
        assert biggest <= early * 1.2  # turn 200 costs what turn 5 did: one bounded page
        header = await store.get(CALL)
        assert header is not None and header.pages == 200 // PAGE_TURNS + 1
        assert not header.turns
        whole = await store.whole(CALL)
        assert whole is not None and len(whole.turns) == 400
        assert [(t.turn_id, t.role) for t in whole.turns[:3]] == [
            (1, "user"), (1, "assistant"), (2, "user")]
        assert [t.turn_id for t in whole.turns] == sorted(t.turn_id for t in whole.turns)

    asyncio.run(run())


def test_redelivered_and_late_events() -> None:
    async def run() -> None:
        kv = FakeKV()
        store = SessionStore(cast(Any, kv))
        await record(store, user_turn(1, "q1"))
        header = await store.get(CALL)  # the first page made the header too
        assert header is not None and header.pages == 1
        for turn in range(2, 20):
            await record(store, user_turn(turn, f"q{turn}"))
        await record(store, agent_turn(3, "a3"))  # late, into an old page
        before = dict(kv.data)
        await record(store, user_turn(3, "q3"))  # redelivered: nothing written
        assert kv.data == before
        whole = await store.whole(CALL)
        assert whole is not None
        assert [(t.turn_id, t.role) for t in whole.turns if t.turn_id == 3] == [
            (3, "user"), (3, "assistant")]
        assert len(whole.turns) == 20

    asyncio.run(run())


def test_a_turns_context_reads_only_the_pages_after_the_summary() -> None:
    async def run() -> None:
        kv = FakeKV()
        store = SessionStore(cast(Any, kv))
        for turn in range(1, 41):
            await record(store, user_turn(turn, f"q{turn}"))
        await store.mutate(CALL, lambda s: apply_summary(s, 30, "the first thirty turns"))
        reads: list[str] = []
        get = kv.get

        async def counting_get(key: str) -> Any:
            reads.append(key)
            return await get(key)

        kv.get = counting_get  # type: ignore[method-assign]
        session = await store.turns(CALL, None, before_turn=41)
        assert session is not None
        assert {t.turn_id for t in session.turns} >= set(range(31, 41))
        assert reads == [CALL, page_key(CALL, 3), page_key(CALL, 4), page_key(CALL, 5)]

    asyncio.run(run())


def test_a_session_before_pages_still_reads_and_purges_whole() -> None:
    async def run() -> None:
        kv = FakeKV()
        old = Session(call_id=CALL, turns=[TurnRecord(turn_id=1, role="user", text="old")])
        kv.put_now(CALL, old.SerializeToString())
        store = SessionStore(cast(Any, kv))
        await record(store, agent_turn(1, "new"))
        whole = await read_session(cast(Any, kv), CALL)
        assert whole is not None and [t.text for t in whole.turns] == ["old", "new"]
        assert await store.purge(CALL)
        assert kv.data == {}
        assert await read_session(cast(Any, kv), CALL) is None

    asyncio.run(run())


def test_merged_keeps_the_header() -> None:
    header = Session(call_id=CALL, caller="+15550100", summary="s", summarized_through=2)
    page = Session(call_id=CALL, turns=[TurnRecord(turn_id=3, role="user", text="x")])
    whole = merged(header, [page])
    assert (whole.caller, whole.summary, [t.text for t in whole.turns]) == (
        "+15550100", "s", ["x"])
