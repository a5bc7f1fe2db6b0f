"""Session memory against the real stack (real NATS, real memory and LLM services, SmolLM2):
a long call gets summarized in the background, a returning caller's context carries what
their earlier call left, and `voxbus forget-caller` deletes it all. The memory service is
driven at bus level with call events, as the gateway publishes them."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from tests.integration.conftest import wait_for_session, watch_kv
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.llm_pb2 import ContextReply, ContextRequest
from voxbus.v1.memory_pb2 import CallerMemory, ForgetCallerReply, ForgetCallerRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_cli.stack import Stack
from voxbus_common import subjects

CALLER = "+1 (555) 010-0199"
SAME_CALLER = "+15550100199"
CALLER_KEY = hashlib.sha256(SAME_CALLER.encode()).hexdigest()

# ~45 estimated tokens a message: 12 turns pass the default 600-token budget about twice
FACTS = ["my name is Ann Lindqvist", "I want to book a table for four people",
         "the booking is for Friday the twelfth", "we would like a table by the window",
         "one of us is allergic to peanuts", "my membership number is seven seven two",
         "we will arrive at half past seven", "please add a birthday cake",
         "the cake should say happy birthday Maja", "we need a high chair for a toddler",
         "we would like to pay by invoice", "please send the confirmation by text"]


def user_text(i: int) -> str:
    return (f"Okay, one more thing for you to note down carefully: {FACTS[i]}. Could you "
            "please repeat that back to me so that I know you have written it down, because "
            "last time something got lost between the phone call and the restaurant?")


def agent_text(i: int) -> str:
    return (f"Of course, I have written it down: {FACTS[i]}. Everything you told me so far "
            "is saved on your booking, and the restaurant will see it before you arrive. "
            "Is there anything else you would like me to add for your evening?")


@pytest.fixture
async def bus(stack: Stack) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc = await nats.connect(stack.nats_url)
    try:
        yield nc, nc.jetstream()
    finally:
        await nc.close()


async def send(js: JetStreamContext, call_id: str, turn_id: int, **kind: Any) -> None:
    """One call event into VB_EVENTS, acked, as the gateway's Call.control() does."""
    event = CallEvent(meta=Meta(call_id=call_id, turn_id=turn_id, seq=1,
                                sent_unix_ns=time.time_ns()), **kind)
    await js.publish(subjects.control(call_id), event.SerializeToString(), timeout=5.0)


async def short_call(js: JetStreamContext, call_id: str, caller: str, said: str,
                     heard: str) -> None:
    await send(js, call_id, 0, started=CallEvent.Started(edge="test", caller=caller))
    await send(js, call_id, 1, user_turn=CallEvent.UserTurn(text=said))
    await send(js, call_id, 1, agent_turn=CallEvent.AgentTurn(heard_text=heard, full_text=heard))
    await send(js, call_id, 1, ended=CallEvent.Ended(reason="caller hung up"))


async def context(nc: Client, call_id: str, turn_id: int, max_messages: int = 50
                  ) -> ContextReply:
    req = ContextRequest(meta=Meta(call_id=call_id, turn_id=turn_id), max_messages=max_messages)
    msg = await nc.request(subjects.RPC_MEMORY_CONTEXT, req.SerializeToString(), timeout=5.0)
    reply = ContextReply()
    reply.ParseFromString(msg.data)
    assert not reply.error, reply.error
    return reply


async def wait_for_caller(js: JetStreamContext, key: str, done: Callable[[CallerMemory], bool],
                          timeout_s: float = 60.0) -> CallerMemory:
    """Watch a caller's record in the callers bucket until `done(record)`."""
    kv = await js.key_value(subjects.CALLERS_BUCKET)
    return await watch_kv(kv, key, CallerMemory, done, timeout_s)


def note_of(call_id: str) -> Callable[[CallerMemory], bool]:
    return lambda m: any(n.call_id == call_id for n in m.notes)


async def test_long_call_is_summarized_in_the_background(
        stack: Stack, bus: tuple[Client, JetStreamContext]) -> None:
    nc, js = bus
    call_id = f"memlong-{uuid.uuid4().hex[:8]}"
    await send(js, call_id, 0, started=CallEvent.Started(edge="test"))
    for i in range(len(FACTS)):
        turn = i + 1
        await send(js, call_id, turn, user_turn=CallEvent.UserTurn(text=user_text(i)))
        await send(js, call_id, turn, agent_turn=CallEvent.AgentTurn(
            heard_text=agent_text(i), full_text=agent_text(i)))
    session = await wait_for_session(
        stack, call_id, lambda s: len(s.turns) == 2 * len(FACTS) and bool(s.summary)
        and s.summarized_through > 0, timeout_s=240)
    assert session.summarized_through < len(FACTS)  # the newest turns stay verbatim

    reply = await context(nc, call_id, turn_id=len(FACTS) + 1)
    assert reply.summary  # the summary replaces the older turns
    assert 6 <= len(reply.messages) < 2 * len(FACTS)  # memory_keep_recent = 6
    assert reply.messages[-1].content == agent_text(len(FACTS) - 1)
    assert reply.caller_memory == ""  # anonymous call


async def test_returning_caller_gets_the_earlier_call(
        stack: Stack, bus: tuple[Client, JetStreamContext]) -> None:
    nc, js = bus
    first, second = (f"memcaller-{n}-{uuid.uuid4().hex[:8]}" for n in (1, 2))
    await short_call(js, first, CALLER,
                     said="Hi, this is Zephyrine Quackenbush. I booked the lakeside cabin for "
                          "March ninth, call me back at 415-555-0132.",
                     heard="Thank you Zephyrine, your lakeside cabin for March ninth is booked.")
    record = await wait_for_caller(js, CALLER_KEY, note_of(first))
    note = next(n for n in record.notes if n.call_id == first)
    assert note.summary and "415-555-0132" not in note.summary  # notes are redacted

    await send(js, second, 0, started=CallEvent.Started(edge="test", caller=SAME_CALLER))
    await send(js, second, 1, user_turn=CallEvent.UserTurn(text="Hello again, it's me."))
    stored = await wait_for_session(stack, second, lambda s: len(s.turns) == 1)
    assert stored.caller == SAME_CALLER

    kv = await js.key_value(subjects.CALLERS_BUCKET)
    for _ in range(5):  # the LLM's note may replace the extractive one meanwhile
        before = (await kv.get(CALLER_KEY)).value
        reply = await context(nc, second, turn_id=2)
        after = (await kv.get(CALLER_KEY)).value
        if before == after:
            break
    record = CallerMemory()
    record.ParseFromString(after or b"")
    summary = next(n.summary for n in record.notes if n.call_id == first)
    assert reply.caller_memory and summary in reply.caller_memory
    assert [m.content for m in reply.messages] == ["Hello again, it's me."]
    keys = await kv.keys()
    assert CALLER_KEY in keys and not any("555" in k for k in keys)  # hashed identities only


async def test_forget_caller_deletes_memory_and_sessions(
        stack: Stack, bus: tuple[Client, JetStreamContext]) -> None:
    nc, js = bus
    caller = f"+44 20 7946 {uuid.uuid4().int % 10000:04d}"
    key = hashlib.sha256(caller.replace(" ", "").encode()).hexdigest()
    call_id = f"memforget-{uuid.uuid4().hex[:8]}"
    await short_call(js, call_id, caller, said="I am Quill, please remember my blue door.",
                     heard="Noted, Quill: the blue door.")
    await wait_for_caller(js, key, note_of(call_id))
    await wait_for_session(stack, call_id, lambda s: s.ended_unix_ns > 0)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voxbus_cli", "forget-caller", caller.replace(" ", "-"),
        "--nats-url", stack.nats_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "long-term memory: deleted" in out.decode()
    assert "call sessions deleted: 1" in out.decode()

    with pytest.raises(KeyNotFoundError):
        await (await js.key_value(subjects.CALLERS_BUCKET)).get(key)
    with pytest.raises(KeyNotFoundError):
        await (await js.key_value(subjects.SESSIONS_BUCKET)).get(call_id)

    again = ForgetCallerReply()
    msg = await nc.request(subjects.RPC_MEMORY_FORGET,
                           ForgetCallerRequest(caller=caller).SerializeToString(), timeout=10)
    again.ParseFromString(msg.data)
    assert (again.memory_deleted, again.calls_deleted, again.error) == (False, 0, "")
    msg = await nc.request(subjects.RPC_MEMORY_FORGET, b"\xff\xff", timeout=10)
    bad = ForgetCallerReply()
    bad.ParseFromString(msg.data)
    assert bad.error  # a clear error, and the service keeps serving
    assert (await context(nc, call_id, 1)).messages == []


async def test_a_real_call_through_the_gateway_is_remembered_for_its_caller(
        stack: Stack, bus: tuple[Client, JetStreamContext]) -> None:
    """End to end: the caller identity given at the edge reaches memory, and the next call
    from the same caller (formatted differently) is offered a note of the first one."""
    from tests.integration.conftest import SPEECH, words
    from voxbus_cli.caller import load_wav, place_call

    nc, js = bus
    who = "+44 20 7946 0199"
    first = await place_call(stack.gateway_url, load_wav(SPEECH / "ami_ES2011a_hs0_40-46s.wav"),
                             caller=who)
    assert "abigail" in words(first.caller_text)
    key = hashlib.sha256(b"+442079460199").hexdigest()
    await wait_for_caller(js, key, note_of(first.call_id))

    second = await place_call(stack.gateway_url, load_wav(SPEECH / "arctic_aew_a0001.wav"),
                              caller="+442079460199")
    session = await wait_for_session(stack, second.call_id, lambda s: bool(s.ended_unix_ns))
    assert session.caller == "+442079460199"
    reply = await context(nc, second.call_id, turn_id=99)
    assert reply.caller_memory  # what the model is offered about the first call
