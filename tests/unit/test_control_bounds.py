"""Control API input bounds against the real gRPC server with a fake bus: every request field
has a limit, a violation is INVALID_ARGUMENT naming the field and never echoing the value, an
oversized request is refused by gRPC itself, bus failures are clean statuses, and minting a
media token needs the admin scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import grpc
import nats.errors
import pytest
from google.protobuf.descriptor import FieldDescriptor

from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.tokens import MediaTokens
from voxbus_gateway.control.server import start_control_server
from voxbus_gateway.control.service import (
    CALL_ID_RULE,
    FIELD_LIMITS,
    MAX_REQUEST_BYTES,
    MAX_SUBJECT,
    MAX_TEXT_CHARS,
)

if TYPE_CHECKING:
    from voxbus.v1.control_pb2_grpc import ControlAsyncStub

OPERATOR, ADMIN = "operator-token", "admin-token"
MEDIA_KEYS = "k1:media-test-secret-0123456789abcdef"
CONTROL = pb.DESCRIPTOR.services_by_name["Control"]


class FakeMsg:
    def __init__(self, data: bytes) -> None:
        self.data = data


class FakeSub:
    async def next_msg(self, timeout: float) -> FakeMsg:  # noqa: ASYNC109 (nats API)
        raise nats.errors.TimeoutError

    async def unsubscribe(self) -> None:
        pass


class FakeNats:
    """What the control service uses of a NATS connection; `fail` is raised by request."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.fail: Exception | None = None

    async def request(self, subject: str, payload: bytes,
                      timeout: float) -> FakeMsg:  # noqa: ASYNC109 (nats API)
        self.sent.append(payload)
        if self.fail is not None:
            raise self.fail
        return FakeMsg(pb.CallCommandReply(detail="done").SerializeToString())

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: Any = None) -> FakeSub:
        return FakeSub()

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        pass


class FakeBus:
    def __init__(self) -> None:
        self.nc = FakeNats()


class Served(NamedTuple):
    control: ControlAsyncStub
    nc: FakeNats
    channel: grpc.aio.Channel


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    bus = FakeBus()
    settings = Settings(control_port=0, gateway_host="127.0.0.1", control_tokens=OPERATOR,
                        control_admin_tokens=ADMIN, control_jwt_secret="",
                        control_allow_loopback=False, media_token_keys=MEDIA_KEYS)
    server, port = await start_control_server(cast(Bus, bus), settings)
    try:
        async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}",
                options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]) as channel:
            yield Served(ControlStub(channel), bus.nc, channel)
    finally:
        await server.stop(grace=None)


def auth(token: str = OPERATOR) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def rpc(control: ControlAsyncStub, method: str, request: Any, token: str) -> Any:
    call = getattr(control, method)(request, metadata=auth(token))
    return call.read() if CONTROL.methods_by_name[method].server_streaming else call


def test_every_string_field_of_every_request_has_a_limit() -> None:
    for method in CONTROL.methods:
        message = method.input_type
        strings = {f.name for f in message.fields
                   if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)}
        assert message.name in FIELD_LIMITS, message.name
        assert set(FIELD_LIMITS[message.name]) == strings, message.name
        assert all(not f.is_repeated and f.type != FieldDescriptor.TYPE_MESSAGE
                   for f in message.fields), (
            f"{message.name}: repeated or nested fields need their own bounds")


async def test_each_oversized_field_is_invalid_argument_without_the_value(
        served: Served) -> None:
    control, nc, _ = served
    checked: set[tuple[str, str]] = set()
    for method in CONTROL.methods:
        token = ADMIN if method.name == "IssueMediaToken" else OPERATOR
        for field, limit in FIELD_LIMITS[method.input_type.name].items():
            value = "Z" * (limit + 1)
            request = getattr(pb, method.input_type.name)(**{field: value})
            error = await refused(rpc(control, method.name, request, token))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, field)
            details = str(error.details())
            assert details == f"{field} is longer than {limit} characters"
            checked.add((method.input_type.name, field))
    assert len(checked) == sum(len(limits) for limits in FIELD_LIMITS.values())
    assert nc.sent == [], "an oversized request reached the bus"


async def test_a_bad_call_id_is_not_echoed(served: Served) -> None:
    control, nc, _ = served
    for bad in ("bad id!", "a.b.c", "<script>" * 8):
        error = await refused(control.Mute(pb.MuteRequest(call_id=bad), metadata=auth()))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == CALL_ID_RULE
    big = "x." * (100 * 1024)  # 200 KiB: under the gRPC bound, over the field's
    error = await refused(control.GetCall(pb.GetCallRequest(call_id=big), metadata=auth()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(str(error.details())) < 100 and "x." not in str(error.details())
    assert nc.sent == []


async def test_requests_over_the_grpc_bound_are_resource_exhausted(
        served: Served) -> None:
    control, nc, _ = served
    for request, method in ((pb.SayRequest(call_id="c1", text="a" * 3_000_000), "Say"),
                            (pb.GetCallRequest(call_id="x" * 1_000_000), "GetCall"),
                            (pb.InjectRequest(call_id="c1", text="b" * (MAX_REQUEST_BYTES + 1)),
                             "Inject")):
        error = await refused(getattr(control, method)(request, metadata=auth()))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
        assert len(str(error.details())) < 200
    assert nc.sent == []


async def test_an_unauthenticated_oversized_request_learns_nothing(
        served: Served) -> None:
    control, _, _ = served
    error = await refused(control.Say(pb.SayRequest(call_id="c1", text="a" * 10_000)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_text_at_the_limit_is_forwarded(served: Served
                                                ) -> None:
    control, nc, _ = served
    reply = await control.Say(pb.SayRequest(call_id="c1", text="a" * MAX_TEXT_CHARS),
                              metadata=auth())
    assert reply == pb.CommandReply(call_id="c1", detail="done")
    assert len(nc.sent) == 1


@pytest.mark.parametrize(("failure", "code"), [
    (nats.errors.MaxPayloadError(), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (nats.errors.ConnectionClosedError(), grpc.StatusCode.UNAVAILABLE),
    (nats.errors.OutboundBufferLimitError(), grpc.StatusCode.UNAVAILABLE),
    (nats.errors.TimeoutError(), grpc.StatusCode.UNAVAILABLE),
    (nats.errors.NoRespondersError(), grpc.StatusCode.NOT_FOUND),
])
async def test_bus_failures_are_clean_statuses(served: Served,
                                               failure: Exception,
                                               code: grpc.StatusCode) -> None:
    control, nc, _ = served
    nc.fail = failure
    error = await refused(control.Say(pb.SayRequest(call_id="c1", text="hi"), metadata=auth()))
    assert error.code() == code, error.details()


async def test_media_tokens_need_the_admin_scope_and_a_bounded_subject(
        served: Served) -> None:
    control, _, _ = served
    error = await refused(control.IssueMediaToken(pb.IssueMediaTokenRequest(subject="u"),
                                                  metadata=auth(OPERATOR)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    subject = "s" * MAX_SUBJECT
    issued = await control.IssueMediaToken(pb.IssueMediaTokenRequest(subject=subject, ttl_s=60),
                                           metadata=auth(ADMIN))
    assert MediaTokens(MEDIA_KEYS).verify(issued.token).subject == subject
    error = await refused(control.IssueMediaToken(
        pb.IssueMediaTokenRequest(subject=subject + "s"), metadata=auth(ADMIN)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # refused, not truncated
    assert error.details() == f"subject is longer than {MAX_SUBJECT} characters"
    error = await refused(control.IssueMediaToken(
        pb.IssueMediaTokenRequest(call_id="no way"), metadata=auth(ADMIN)))
    assert error.details() == CALL_ID_RULE


async def test_a_request_that_does_not_parse_is_invalid_argument(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    _, nc, channel = served
    say = channel.unary_unary("/voxbus.v1.Control/Say", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    bad_utf8 = b"\x0a\x02c1\x12\x03\xff\xfe\xfd"  # call_id "c1", text = invalid UTF-8
    for raw in (bad_utf8, b"\x0a\xff\xff"):
        error = await refused(say(raw, metadata=auth()))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert nc.sent == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
