"""The LLM side of memory: the summarize handler (never crashes on bad input) and the
system-prompt preamble the worker appends for a call's summary and the caller's memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from tests.memory_fakes import FakeBus, FakeNc, Msg
from voxbus.v1.llm_pb2 import ChatMessage, SummarizeReply, SummarizeRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn, ToolCall
from voxbus_llm.context import context_preamble
from voxbus_llm.summarizer import Summarizer, clean_summary, limit_words, summary_prompt


def test_preamble_is_empty_without_memory() -> None:
    assert context_preamble("", "") == ""
    assert context_preamble("  ", "\n") == ""


def test_preamble_carries_summary_and_caller_memory() -> None:
    text = context_preamble("The caller is  Ann.", "2025-01-02: Booked a table.\n")
    assert text == ("\n\nEarlier in this call: The caller is Ann."
                    "\n\nFrom this caller's previous calls (use only when relevant):\n"
                    "2025-01-02: Booked a table.")
    assert context_preamble("", "x").startswith("\n\nFrom this caller's previous calls")
    assert context_preamble("s", "") == "\n\nEarlier in this call: s"


class Model:
    def __init__(self, words: list[str], fail: bool = False, stall: bool = False) -> None:
        self.name, self.words, self.fail, self.stall = "fake", words, fail, stall
        self.seen: list[list[ChatTurn]] = []

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        self.seen.append(messages)
        if self.stall:
            await asyncio.Event().wait()
        if self.fail:
            raise ConnectionError("server down")
        for word in self.words:
            yield word
        yield ToolCall(id="1", name="noise", arguments="{}")


def request(**kw: Any) -> SummarizeRequest:
    req = SummarizeRequest(meta=Meta(call_id="call-1", sent_unix_ns=time.time_ns()),
                           messages=[ChatMessage(role="user", content="I am Ann, table for 4."),
                                     ChatMessage(role="assistant", content="Booked.",
                                                 interrupted=True)])
    for key, value in kw.items():
        if key == "meta":
            req.meta.CopyFrom(value)
        else:
            setattr(req, key, value)
    return req


async def ask(model: Model, data: bytes, **settings: Any) -> SummarizeReply:
    bus = FakeBus(FakeNc())
    summarizer = Summarizer(cast(Any, bus), Settings(**settings), model)
    await summarizer.serve(cast(Any, Msg(data)))
    reply = SummarizeReply()
    reply.ParseFromString(bus.nc.published[-1][1])
    return reply


def test_prompt_asks_for_a_bounded_third_person_summary() -> None:
    turns = summary_prompt(request(previous_summary="Ann called."), 30)
    assert turns[0].role == "system" and "at most 30 words" in turns[0].content
    assert "third person" in turns[0].content
    assert "Summary so far: Ann called." in turns[1].content
    assert "Caller: I am Ann, table for 4.\nAssistant: Booked. (interrupted)" in turns[1].content


def test_small_model_preambles_are_dropped() -> None:
    assert clean_summary("Here's the updated summary: \n\nAnn booked.") == "Ann booked."
    assert clean_summary("Summary: Ann booked.") == "Ann booked."
    assert clean_summary("Ann booked: a table.") == "Ann booked: a table."


def test_long_output_is_cut_to_the_word_limit() -> None:
    assert limit_words("One two three. Four five six.", 4) == "One two three."
    assert limit_words("One. Two three four five.", 4) == "One. Two three four…"
    assert limit_words("one two three four five", 3) == "one two three…"
    assert limit_words(" a  b ", 5) == "a b"


async def test_summary_reply() -> None:
    model = Model(["The caller, Ann, ", "booked a table for four."])
    reply = await ask(model, request(max_words=12).SerializeToString())
    assert (reply.summary, reply.error) == ("The caller, Ann, booked a table for four.", "")
    assert reply.meta.call_id == "call-1"
    assert "at most 12 words" in model.seen[0][0].content


async def test_bad_input_gets_an_error_reply() -> None:
    model = Model(["x"])
    for data in (b"\xff\x01", request(meta=Meta(call_id="bad id")).SerializeToString(),
                 SummarizeRequest(meta=Meta(call_id="c")).SerializeToString(),
                 request(previous_summary="x" * 30_000).SerializeToString()):
        reply = await ask(model, data)
        assert reply.error and not reply.summary
    assert not model.seen  # the model was never asked


async def test_model_failures_are_error_replies() -> None:
    assert "server down" in (await ask(Model([], fail=True), request().SerializeToString())).error
    assert (await ask(Model([]), request().SerializeToString())).error  # no text
    stalled = await ask(Model([], stall=True), request().SerializeToString(),
                        llm_summarize_timeout_s=0.05)
    assert "TimeoutError" in stalled.error
    old = request(meta=Meta(call_id="c", sent_unix_ns=time.time_ns() - 60 * 10**9))
    assert "gave up" in (await ask(Model(["x"]), old.SerializeToString())).error


async def test_requests_are_queued_and_served_one_at_a_time() -> None:
    gate = asyncio.Event()
    running: list[int] = []

    class Slow(Model):
        async def stream(self, messages: list[ChatTurn], tools: list[dict[str, Any]] | None = None
                         ) -> AsyncIterator[str | ToolCall]:
            running.append(1)
            assert len(running) == 1  # never two generations at once
            await gate.wait()
            running.pop()
            yield "Done."

    bus = FakeBus(FakeNc())
    summarizer = Summarizer(cast(Any, bus), Settings(), Slow([]))
    for _ in range(2):
        await summarizer.on_request(cast(Any, Msg(request().SerializeToString())))
    assert not bus.nc.published  # the subscription callback returned at once
    gate.set()
    await asyncio.gather(*summarizer._tasks)
    assert len(bus.nc.published) == 2
