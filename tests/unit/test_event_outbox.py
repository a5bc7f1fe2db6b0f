"""A call's control events: stored in the order they were made, without the conversation
waiting for a slow stream, and a failure never silent."""

from __future__ import annotations

import asyncio
import logging

import pytest

from voxbus.v1.call_pb2 import CallEvent
from voxbus_gateway.event_outbox import EventOutbox


def note(text: str) -> CallEvent:
    return CallEvent(system_note=CallEvent.SystemNote(text=text))


class SlowStream:
    """Stores events; the first one waits until `leader` is set (an election)."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.leader = asyncio.Event()
        self.fail: set[str] = set()

    async def publish(self, event: CallEvent) -> None:
        text = event.system_note.text
        if not self.stored and not self.leader.is_set():
            await self.leader.wait()
        if text in self.fail:
            raise TimeoutError(f"{text} not acknowledged")
        self.stored.append(text)


async def test_events_are_stored_in_order_while_the_caller_goes_on() -> None:
    stream = SlowStream()
    outbox = EventOutbox(stream.publish)
    outbox.put_unwaited(note("user_turn"))
    outbox.put_unwaited(note("cancel_turn"))
    last = outbox.put(note("agent_turn"))
    assert stream.stored == []  # nobody waited on the election
    stream.leader.set()
    await asyncio.wait_for(last, 10)
    assert stream.stored == ["user_turn", "cancel_turn", "agent_turn"]


async def test_a_lost_event_is_logged_and_the_next_ones_still_go_out(
        caplog: pytest.LogCaptureFixture) -> None:
    stream = SlowStream()
    stream.leader.set()
    stream.fail = {"barge_in"}
    outbox = EventOutbox(stream.publish)
    outbox.put_unwaited(note("barge_in"))
    await asyncio.wait_for(outbox.put(note("ended")), 10)
    assert stream.stored == ["ended"]
    assert "a call event was not stored: TimeoutError: barge_in" in caplog.text


async def test_a_waited_event_raises_what_its_publish_raised() -> None:
    stream = SlowStream()
    stream.leader.set()
    stream.fail = {"ended"}
    outbox = EventOutbox(stream.publish)
    with pytest.raises(TimeoutError, match="ended not acknowledged"):
        await asyncio.wait_for(outbox.put(note("ended")), 10)


async def test_closing_gives_up_events_still_waiting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    stream = SlowStream()
    outbox = EventOutbox(stream.publish)
    outbox.put_unwaited(note("dtmf"))
    await asyncio.wait_for(outbox.close(), 10)
    assert stream.stored == []
    assert "not stored" not in caplog.text  # given up on purpose, not a failure


async def test_flush_waits_for_every_event_put_so_far() -> None:
    stream = SlowStream()
    outbox = EventOutbox(stream.publish)
    outbox.put_unwaited(note("user_turn"))
    outbox.put_unwaited(note("barge_in"))
    stream.leader.set()
    await asyncio.wait_for(outbox.flush(), 10)
    assert stream.stored == ["user_turn", "barge_in"]
