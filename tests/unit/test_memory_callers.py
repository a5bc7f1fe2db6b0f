"""Long-term memory per caller: the hashed key, bounded idempotent notes, the extractive
note, what a new call's context gets, the note written at the end of a call, and deletion."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, cast

import pytest

from tests.memory_fakes import FakeBus, FakeKV, FakeNc
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.llm_pb2 import SummarizeReply
from voxbus.v1.memory_pb2 import (
    CallerMemory,
    CallerNote,
    ForgetCallerReply,
    ForgetCallerRequest,
    Session,
    TurnRecord,
)
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.config import Settings
from voxbus_common.redact import Redactor
from voxbus_memory.callers import (
    BadCallerIdentity,
    add_note,
    caller_key,
    caller_memory_text,
    extractive_note,
    normalize_caller,
    replace_note,
)
from voxbus_memory.longterm import LongTermMemory
from voxbus_memory.recorder import apply_event
from voxbus_memory.store import CallerStore, SessionStore

DAY_NS = 86_400 * 10**9


def test_caller_key_is_a_hash_of_the_normalized_identity() -> None:
    assert normalize_caller("+1 (555) 010-0199") == "+15550100199"
    key = caller_key("+1 (555) 010-0199")
    assert key == hashlib.sha256(b"+15550100199").hexdigest()
    assert key == caller_key("+15550100199") == caller_key(" +1 555-010 0199\t")
    assert key != caller_key("+15550100198")
    assert "555" not in key
    assert caller_key("user-42@app") == caller_key("user42@app")
    with pytest.raises(BadCallerIdentity):
        caller_key(" - ")
    with pytest.raises(BadCallerIdentity):
        normalize_caller("x" * 300)


def test_started_event_records_the_caller() -> None:
    s = Session(call_id="c")
    event = CallEvent(meta=Meta(call_id="c"), started=CallEvent.Started(
        edge="pcm-ws", caller="+1 (555) 010-0199"))
    assert apply_event(s, event)
    assert s.caller == "+15550100199"
    anonymous = Session(call_id="d")
    apply_event(anonymous, CallEvent(meta=Meta(call_id="d"), started=CallEvent.Started()))
    assert anonymous.caller == ""


def note(call_id: str, day: int, text: str = "") -> CallerNote:
    return CallerNote(call_id=call_id, unix_ns=day * DAY_NS, summary=text or f"call {call_id}")


def test_notes_are_bounded_and_idempotent() -> None:
    memory = CallerMemory()
    for day in range(1, 5):
        assert add_note(memory, note(f"c{day}", day), max_notes=3)
    assert [n.call_id for n in memory.notes] == ["c2", "c3", "c4"]
    assert not add_note(memory, note("c4", 4, "again"), max_notes=3)  # redelivered
    assert not add_note(memory, note("c1", 1), max_notes=3)  # older than all kept: dropped
    assert not add_note(memory, CallerNote(call_id="c9", unix_ns=9), max_notes=3)  # empty
    assert add_note(memory, note("c0", 10), max_notes=3)
    assert [n.call_id for n in memory.notes] == ["c3", "c4", "c0"]


def test_a_late_summary_replaces_only_an_existing_note() -> None:
    memory = CallerMemory(notes=[note("c1", 1, "extractive")])
    assert replace_note(memory, "c1", "The caller booked a table.")
    assert memory.notes[0].summary == "The caller booked a table."
    assert not replace_note(memory, "c1", "The caller booked a table.")
    assert not replace_note(memory, "gone", "text")  # forgotten meanwhile: not resurrected
    assert len(memory.notes) == 1


def test_extractive_note_keeps_the_callers_last_words() -> None:
    s = Session(call_id="c", summary="The caller is Ann.", summarized_through=1)
    s.turns.extend([
        TurnRecord(turn_id=1, role="user", text="old words"),
        TurnRecord(turn_id=2, role="user", text="I booked the lakeside cabin."),
        TurnRecord(turn_id=2, role="assistant", text="Great."),
        TurnRecord(turn_id=3, role="user", text="For March ninth. " + "la " * 300),
    ])
    text = extractive_note(s, max_chars=200)
    assert text.startswith("The caller is Ann. The caller said: ")
    assert len(text) <= 200 and "old words" not in text and "Great." not in text
    assert extractive_note(Session(call_id="empty")) == ""
    short = Session(call_id="s", turns=[TurnRecord(turn_id=1, role="user", text="Hi, Zed here.")])
    assert extractive_note(short) == "The caller said: Hi, Zed here."


def test_caller_memory_text_is_bounded_newest_last() -> None:
    memory = CallerMemory(notes=[note("c1", 1, "a" * 200), note("c2", 2, "b" * 200),
                                 note("c3", 3, "c" * 200), note("now", 4, "current")])
    text = caller_memory_text(memory, current_call="now", max_chars=450)
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].endswith("b" * 200) and lines[1].endswith("c" * 200)
    assert lines[1].startswith("1970-01-04: ")
    assert len(caller_memory_text(memory, max_chars=100)) <= 100
    assert caller_memory_text(None) == ""


def make_memory(answer: Any = None, **kw: Any) -> tuple[LongTermMemory, FakeKV, FakeKV]:
    sessions_kv, callers_kv = FakeKV(), FakeKV()
    settings = Settings(**{"caller_notes_max": 3, **kw})
    memory = LongTermMemory(cast(Any, FakeBus(FakeNc(answer))),
                            SessionStore(cast(Any, sessions_kv)),
                            CallerStore(cast(Any, callers_kv)), settings,
                            Redactor.from_setting("card,ssn,email,phone"))
    return memory, sessions_kv, callers_kv


def ended_call(call_id: str, caller: str = "+15550100199") -> Session:
    return Session(call_id=call_id, caller=caller, ended_unix_ns=5 * DAY_NS, turns=[
        TurnRecord(turn_id=1, role="user", text="This is Zed, call me on 415-555-0132."),
        TurnRecord(turn_id=1, role="assistant", text="Sure.")])


async def test_call_end_writes_one_redacted_note_then_the_llm_summary() -> None:
    async def answer(subject: str, data: bytes) -> bytes:
        return SummarizeReply(summary="Zed wants a call at 415 555 0132.").SerializeToString()

    memory, _, callers_kv = make_memory(answer)
    call = ended_call("call-1")
    await memory.on_call_ended(call)
    await memory.on_call_ended(call)  # redelivered Ended
    await asyncio.gather(*memory.tasks)
    stored = await memory.callers.get(caller_key("+1 (555) 010-0199"))
    assert stored is not None and [n.call_id for n in stored.notes] == ["call-1"]
    assert stored.notes[0].summary == "Zed wants a call at [phone]."
    assert len(callers_kv.data) == 1


async def test_without_an_llm_the_extractive_note_stays() -> None:
    memory, _, _ = make_memory(None)  # requests time out
    await memory.on_call_ended(ended_call("call-1"))
    await asyncio.gather(*memory.tasks)
    stored = await memory.callers.get(caller_key("+15550100199"))
    assert stored is not None
    assert stored.notes[0].summary == "The caller said: This is Zed, call me on [phone]."


async def test_anonymous_calls_and_the_policy_switch_store_nothing() -> None:
    memory, _, callers_kv = make_memory(None)
    await memory.on_call_ended(ended_call("call-1", caller=""))
    off, _, off_kv = make_memory(None, caller_memory=False)
    await off.on_call_ended(ended_call("call-2"))
    assert not callers_kv.data and not off_kv.data
    assert await off.context_text(ended_call("call-3")) == ""


async def test_forget_deletes_the_record_and_the_remembered_sessions() -> None:
    memory, sessions_kv, callers_kv = make_memory(None)
    for call_id in ("call-1", "call-2"):
        await memory.sessions.mutate(call_id, lambda s: True)
        await memory.on_call_ended(ended_call(call_id))
    await memory.sessions.mutate("other", lambda s: True)
    await asyncio.gather(*memory.tasks)
    assert await memory.context_text(Session(call_id="call-3", caller="+15550100199"))
    reply = ForgetCallerReply()
    reply.ParseFromString(await memory.answer_forget(
        ForgetCallerRequest(caller="+1 555 010 0199").SerializeToString()))
    assert (reply.calls_deleted, reply.memory_deleted, reply.error) == (2, True, "")
    assert not callers_kv.data and set(sessions_kv.data) == {"other"}
    again = await memory.forget("+15550100199")
    assert (again.calls_deleted, again.memory_deleted) == (0, False)


async def test_forget_answers_bad_input_with_an_error() -> None:
    memory, _, _ = make_memory(None)
    for data in (b"\xff\xff", ForgetCallerRequest(caller="  ").SerializeToString()):
        reply = ForgetCallerReply()
        reply.ParseFromString(await memory.answer_forget(data))
        assert reply.error
