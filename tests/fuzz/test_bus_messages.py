"""Protobuf payloads from the bus and the handlers that consume them.

`decode` of every message type, from arbitrary bytes and from wire-format bytes aimed at the
type (right field numbers, wrong wire types, bad lengths, truncation): a message or
BadMessage, nothing else. Messages built from the descriptors round-trip. The memory
service's `apply_event` folds any sequence of call events without error, idempotently, and
the gateway's control commands answer any CallCommand with a reply, never an exception."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

import voxbus.v1
from tests.fuzz.budget import examples, run_bounded
from tests.fuzz.strategies import proto_messages, wire_bytes
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.control_pb2 import CallCommand, CallCommandReply
from voxbus.v1.memory_pb2 import Session
from voxbus_common.bus import BadMessage, decode
from voxbus_common.redact import Redactor
from voxbus_gateway.call import Call
from voxbus_gateway.commands import MAX_TEXT, TARGET, CallCommands, CommandError, _text
from voxbus_memory.recorder import apply_event


def _message_types() -> dict[str, type[Message]]:
    out: dict[str, type[Message]] = {}
    for mod in pkgutil.iter_modules(voxbus.v1.__path__):
        if mod.name.endswith("_pb2"):
            module = importlib.import_module(f"voxbus.v1.{mod.name}")
            for name in module.DESCRIPTOR.message_types_by_name:
                out[name] = getattr(module, name)
    return out


TYPES = _message_types()


def test_every_bus_message_type_is_fuzzed() -> None:
    assert len(TYPES) >= 40 and {"CallEvent", "AudioFrame", "CallCommand"} <= set(TYPES)


def _decodes_or_refuses(cls: type[Message], data: bytes) -> None:
    try:
        msg = decode(cls, data)
    except BadMessage as exc:
        assert cls.__name__ in str(exc)
        return
    assert isinstance(msg, cls)
    msg.SerializeToString()  # what decoded can be sent on


@pytest.mark.parametrize("name", sorted(TYPES))
def test_decode_any_bytes(name: str) -> None:
    cls = TYPES[name]

    @examples(40)
    @given(st.binary(max_size=200) | wire_bytes(cls.DESCRIPTOR))
    def check(data: bytes) -> None:
        _decodes_or_refuses(cls, data)

    check()


@pytest.mark.parametrize("name", sorted(TYPES))
def test_round_trip(name: str) -> None:
    cls = TYPES[name]

    @examples(15)
    @given(proto_messages(cls.DESCRIPTOR))
    def check(msg: Message) -> None:
        data = msg.SerializeToString()
        back = decode(cls, data)
        assert back.SerializeToString(deterministic=True) == msg.SerializeToString(
            deterministic=True)

    check()


# -- memory: apply_event ------------------------------------------------------------------------

events = proto_messages(CallEvent.DESCRIPTOR).map(lambda m: cast(CallEvent, m))
ROLE_ORDER = {"user": 0, "assistant": 1, "system": 2}


@examples(200)
@given(st.lists(events, max_size=8), st.booleans())
def test_apply_event(seq: list[CallEvent], redacting: bool) -> None:
    redact = Redactor() if redacting else str
    session = Session()
    for event in seq:
        changed = apply_event(session, event, redact)
        assert isinstance(changed, bool)
        once = session.SerializeToString(deterministic=True)
        apply_event(session, event, redact)  # JetStream redelivers: nothing may change
        assert session.SerializeToString(deterministic=True) == once
    keys = [(t.turn_id, ROLE_ORDER[t.role]) for t in session.turns]
    assert keys == sorted(keys)


# -- gateway: control commands ------------------------------------------------------------------

@examples(500)
@given(st.text() | st.integers(0, 3000).map(
    lambda n: " " * 3 + "x" * n))
def test_command_text(value: str) -> None:
    try:
        text = _text(value, "text")
    except CommandError as exc:
        assert exc.code == "INVALID_ARGUMENT" and str(exc).startswith("text is ")
        return
    assert text == value.strip() and 0 < len(text) <= MAX_TEXT


@examples(400)
@given(st.text() | st.from_regex(TARGET) | st.text(max_size=30).map(lambda s: "sip:" + s))
def test_transfer_target(target: str) -> None:
    if TARGET.fullmatch(target):
        assert target.startswith("sip:") or target.lstrip("+").isdigit()
        assert not any(c.isspace() or c in "<>" for c in target)


@dataclass
class FakeConversation:
    """A `ConversationControl` (voxbus_gateway.ports) that records what it is told."""

    turn: object | None = None
    muted: bool = False
    turn_counter: int = 3
    said: list[str] = field(default_factory=list)

    @property
    def agent_speaking(self) -> bool:
        return self.turn is not None

    async def say(self, text: str) -> bool:
        self.said.append(text)
        return True

    async def cancel_turn(self, reason: str) -> None:
        self.turn = None

    def set_muted(self, muted: bool) -> None:
        self.muted = muted


class FakeNats:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))


@dataclass
class FakeSettings:
    agent_file: str = ""


class FakeCall:
    """The parts of a gateway Call that control commands touch."""

    def __init__(self, speaking: bool, ending: bool) -> None:
        self.conversation = FakeConversation(turn=object() if speaking else None)
        self.ending = ending
        self.bus = type("Bus", (), {"nc": FakeNats()})()
        self.settings = FakeSettings()
        self.call_id, self.gateway_id, self.caller = "c1", "gw-1", ""
        self.edge = type("Edge", (), {"name": "pcm-ws"})()
        self.started_unix_ns = 1
        self.turn_log: list[bytes] = []
        self.actions: list[tuple[str, Any]] = []

    def request_hangup(self, reason: str) -> None:
        self.actions.append(("hangup", reason))

    async def control(self, turn: int, *, wait: bool = False, **kwargs: Any) -> None:
        self.actions.append(("control", kwargs))

    async def transfer(self, turn: int, target: str) -> None:
        assert TARGET.fullmatch(target)
        self.actions.append(("transfer", target))

    async def watch(self, event: dict[str, Any]) -> None:
        self.actions.append(("watch", event))


commands = proto_messages(CallCommand.DESCRIPTOR).map(lambda m: m.SerializeToString())


@examples(250)
@given(commands | st.binary(max_size=120) | wire_bytes(CallCommand.DESCRIPTOR),
       st.booleans(), st.booleans())
def test_call_command_always_answers(data: bytes, speaking: bool, ending: bool) -> None:
    fake = FakeCall(speaking, ending)
    handler = CallCommands(cast(Call, fake))

    async def send() -> None:
        msg = Msg(cast(Any, None), subject="vb.rpc.call.c1", reply="_INBOX.1", data=data)
        await handler.on_command(msg)

    run_bounded(send())
    [(subject, payload)] = fake.bus.nc.published
    reply = decode(CallCommandReply, payload)
    assert subject == "_INBOX.1"
    assert reply.error_code in ("", "INVALID_ARGUMENT", "FAILED_PRECONDITION")
    assert bool(reply.error) == bool(reply.error_code)
    assert reply.error or reply.detail or reply.HasField("info")
