"""The gRPC control API against the real services: every RPC on live calls (the call is steered
from outside while a caller stays on the line), unknown and malformed call ids, auth by static
token and JWT, health and reflection, media tokens, and outbound calls against a local fake
of Twilio's REST API."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.integration.conftest import SPEECH, extra_gateway, wait_for_session, words
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.tokens import MediaTokens
from voxbus_testkit.live_call import LiveCall

if TYPE_CHECKING:  # (the async stub exists in the typing stubs only)
    from voxbus.v1.control_pb2_grpc import ControlAsyncStub

TOKEN = "control-test-token"
ADMIN_TOKEN = "control-test-admin-token"
JWT_SECRET = "control-test-jwt-secret-0123456789abcdef"
MEDIA_KEYS = "k1:media-test-secret-0123456789abcdef"
TWILIO_SID = "ACtest0001"


@pytest.fixture
async def control(stack: Stack) -> AsyncIterator[ControlAsyncStub]:
    """A channel presenting the stack's (admin) token on every call."""
    async with stack.control_channel() as channel:
        yield ControlStub(channel)


async def expect(code: grpc.StatusCode, call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return str(caught.value.details())


def is_turn(match: str) -> Any:
    return lambda e: e["type"] == "turn" and match in words(e.get("agent_text") or "") + "|" + (
        words(e.get("user_text") or ""))


async def test_a_live_call_is_listed_watched_and_steered(stack: Stack,
                                                         control: ControlAsyncStub) -> None:
    async with LiveCall(stack.gateway_url) as call:
        listed = (await control.ListCalls(pb.ListCallsRequest())).calls
        mine = next(c for c in listed if c.call_id == call.call_id)
        assert (mine.state, mine.edge) == (pb.CALL_STATE_ACTIVE, "pcm-ws")
        updates: list[pb.CallUpdate] = []
        watcher = control.WatchCall(pb.WatchCallRequest(call_id=call.call_id))

        async def collect() -> None:
            async for update in watcher:
                updates.append(update)

        collecting = asyncio.create_task(collect())

        call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))
        await call.wait_for(is_turn("danger trail"))
        info = await control.GetCall(pb.GetCallRequest(call_id=call.call_id))
        answered = next(t for t in info.turns if "danger" in words(t.user_text))
        assert answered.agent_text and answered.latency_ms["voice_to_voice"] > 0

        said = "This is the supervisor speaking."
        reply = await control.Say(pb.SayRequest(call_id=call.call_id, text=said, interrupt=True))
        assert reply.call_id == call.call_id
        await call.wait_for(lambda e: e["type"] == "turn" and e["agent_text"] == said)

        await control.Inject(pb.InjectRequest(call_id=call.call_id, text="The caller is a VIP."))
        await wait_for_session(stack, call.call_id, lambda s: any(
            t.role == "system" and t.text == "The caller is a VIP." for t in s.turns))

        assert "muted" in (await control.Mute(pb.MuteRequest(call_id=call.call_id))).detail
        mark = len(call.events)
        call.speak(load_wav(SPEECH / "osr_us0034_8k_s02.wav"))
        heard = await call.wait_for(lambda e: e["type"] == "transcript" and e["final"], mark)
        await control.Unmute(pb.MuteRequest(call_id=call.call_id))
        await control.Say(pb.SayRequest(call_id=call.call_id, text="I am back."))
        await call.wait_for(lambda e: e["type"] == "turn" and e["agent_text"] == "I am back.",
                            mark)
        assert not [e for e in call.events[mark:] if e["type"] == "turn"
                    and e["turn"] == heard["turn"]], "a muted agent answered"

        await control.Transfer(pb.TransferRequest(call_id=call.call_id, target="+15550100100"))
        ended = await call.wait_for(lambda e: e["type"] == "ended")
        assert ended["reason"] == "transferred to +15550100100"
        assert {"type": "transfer", "target": "+15550100100"} in call.events
        await asyncio.wait_for(collecting, 60)  # the watch ends with the call
    kinds = {u.type for u in updates}
    assert {"transcript", "turn", "control", "transfer", "call_ended"} <= kinds, kinds
    assert all(u.call_id == call.call_id for u in updates)
    commands = [u.data["command"] for u in updates if u.type == "control"]
    assert commands == ["say", "inject", "mute", "unmute", "say", "transfer"]


async def test_end_call_then_memory_answers_and_bad_requests(stack: Stack,
                                                             control: ControlAsyncStub) -> None:
    async with LiveCall(stack.gateway_url) as call:
        live = call.call_id
        assert "empty" in await expect(grpc.StatusCode.INVALID_ARGUMENT, control.Say(
            pb.SayRequest(call_id=live, text="  ")))
        await expect(grpc.StatusCode.INVALID_ARGUMENT, control.Transfer(
            pb.TransferRequest(call_id=live, target="not a number")))
        await control.EndCall(pb.EndCallRequest(call_id=live, reason="ended by supervisor"))
        assert (await call.wait_for(lambda e: e["type"] == "ended"))["reason"] == (
            "ended by supervisor")
    await wait_for_session(stack, live, lambda s: bool(s.ended_unix_ns))
    info = await control.GetCall(pb.GetCallRequest(call_id=live))  # from memory now
    assert info.summary.state == pb.CALL_STATE_ENDED
    assert info.ended_reason == "ended by supervisor"
    await expect(grpc.StatusCode.NOT_FOUND, control.EndCall(pb.EndCallRequest(call_id=live)))
    unknown = "no-such-call-0001"
    await expect(grpc.StatusCode.NOT_FOUND, control.GetCall(pb.GetCallRequest(call_id=unknown)))
    await expect(grpc.StatusCode.NOT_FOUND, control.Say(pb.SayRequest(call_id=unknown,
                                                                       text="hi")))
    watch = control.WatchCall(pb.WatchCallRequest(call_id=unknown))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch.read()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await expect(grpc.StatusCode.INVALID_ARGUMENT, control.Mute(pb.MuteRequest(
        call_id="bad id!")))
    await expect(grpc.StatusCode.FAILED_PRECONDITION, control.IssueMediaToken(
        pb.IssueMediaTokenRequest(subject="x")))  # this gateway has no media token keys
    assert "TWILIO_ACCOUNT_SID" in await expect(
        grpc.StatusCode.FAILED_PRECONDITION,
        control.StartCall(pb.StartCallRequest(to="+15550100199", **{"from": "+15550100100"})))


class FakeTwilio(BaseHTTPRequestHandler):
    """Twilio's Calls resource: create answers a CallSid (records what it was sent)."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        FakeTwilio.seen.append({"path": self.path, "form": form,
                                "auth": self.headers.get("Authorization", "")})
        payload = json.dumps({"sid": "CAoutbound0001", "status": "queued"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def secured(stack: Stack, fake_twilio: str) -> Iterator[str]:
    """A gateway whose control API wants tokens, with media token keys and Twilio set up."""
    port = free_port()
    env = {"VOXBUS_CONTROL_PORT": str(port), "VOXBUS_CONTROL_TOKENS": f"other,{TOKEN}",
           "VOXBUS_CONTROL_ADMIN_TOKENS": ADMIN_TOKEN,
           "VOXBUS_CONTROL_JWT_SECRET": JWT_SECRET, "VOXBUS_MEDIA_TOKEN_KEYS": MEDIA_KEYS,
           "TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": "twilio-test-token",
           "VOXBUS_TWILIO_API_BASE": fake_twilio, "VOXBUS_PUBLIC_URL": "https://voice.test"}
    with extra_gateway(stack, "control", env):
        yield f"127.0.0.1:{port}"


async def test_auth_health_reflection_tokens_and_outbound(secured: str) -> None:
    async with grpc.aio.insecure_channel(secured) as channel:
        control: ControlAsyncStub = ControlStub(channel)
        listing = control.ListCalls(pb.ListCallsRequest())
        assert "Bearer" in await expect(grpc.StatusCode.UNAUTHENTICATED, listing)
        wrong = (("authorization", "Bearer nope"),)
        await expect(grpc.StatusCode.UNAUTHENTICATED,
                     control.ListCalls(pb.ListCallsRequest(), metadata=wrong))
        ok = (("authorization", f"Bearer {TOKEN}"),)
        await control.ListCalls(pb.ListCallsRequest(), metadata=ok)
        now = int(time.time())
        good_jwt = jwt.encode({"aud": "voxbus-control", "exp": now + 60}, JWT_SECRET)
        await control.ListCalls(pb.ListCallsRequest(),
                                metadata=(("authorization", f"Bearer {good_jwt}"),))
        other_aud = jwt.encode({"aud": "someone-else", "exp": now + 60}, JWT_SECRET)
        await expect(grpc.StatusCode.UNAUTHENTICATED, control.ListCalls(
            pb.ListCallsRequest(), metadata=(("authorization", f"Bearer {other_aud}"),)))
        await expect(grpc.StatusCode.UNAUTHENTICATED, control.EndCall(
            pb.EndCallRequest(call_id="any"), metadata=wrong))  # before looking the call up

        health = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service="voxbus.v1.Control"))  # no token needed
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        await expect(grpc.StatusCode.PERMISSION_DENIED, control.IssueMediaToken(
            pb.IssueMediaTokenRequest(subject="user-7"), metadata=ok))  # operator scope
        admin = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        issued = await control.IssueMediaToken(
            pb.IssueMediaTokenRequest(subject="user-7", ttl_s=60), metadata=admin)
        assert MediaTokens(MEDIA_KEYS).verify(issued.token).subject == "user-7"
        assert issued.expires_unix - now <= 61
        await expect(grpc.StatusCode.INVALID_ARGUMENT, control.IssueMediaToken(
            pb.IssueMediaTokenRequest(subject="u", ttl_s=10**6), metadata=admin))
        assert "subject" in await expect(grpc.StatusCode.INVALID_ARGUMENT, control.IssueMediaToken(
            pb.IssueMediaTokenRequest(subject="u" * 129), metadata=admin))  # not truncated

        started = await control.StartCall(
            pb.StartCallRequest(to="+15550100199", **{"from": "+15550100100"}), metadata=ok)
        assert started.carrier_call_id == "CAoutbound0001"
        sent = FakeTwilio.seen[-1]
        assert sent["path"] == f"/2010-04-01/Accounts/{TWILIO_SID}/Calls.json"
        assert sent["form"] == {"To": "+15550100199", "From": "+15550100100",
                                "Url": "https://voice.test/v1/twilio/voice", "Method": "POST"}
        await expect(grpc.StatusCode.INVALID_ARGUMENT, control.StartCall(
            pb.StartCallRequest(to="555", **{"from": "+15550100100"}), metadata=ok))
        await expect(grpc.StatusCode.UNIMPLEMENTED, control.StartCall(
            pb.StartCallRequest(to="+15550100199", carrier="vonage",
                                **{"from": "+15550100100"}), metadata=ok))

    reflected = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(secured))
    assert "voxbus.v1.Control" in reflected.get_services()


async def test_watch_calls_sees_every_call_start_and_end(stack: Stack,
                                                         control: ControlAsyncStub) -> None:
    stream = control.WatchCalls(pb.WatchCallsRequest())
    seen: list[pb.CallUpdate] = []

    async def collect(call_id: list[str]) -> None:
        async for update in stream:
            seen.append(update)
            if call_id and update.call_id == call_id[0] and update.type == "call_ended":
                return

    mine: list[str] = []
    collecting = asyncio.create_task(collect(mine))
    await stream.initial_metadata()  # sent once the server has subscribed: nothing is missed
    async with LiveCall(stack.gateway_url) as call:
        mine.append(call.call_id)
        await control.EndCall(pb.EndCallRequest(call_id=call.call_id))
        await call.wait_for(lambda e: e["type"] == "ended")
    await asyncio.wait_for(collecting, 60)
    stream.cancel()
    kinds = [u.type for u in seen if u.call_id == mine[0]]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended", kinds
    started = next(u for u in seen if u.call_id == mine[0])
    assert started.data["edge"] == "pcm-ws"


async def test_huge_requests_and_ids_are_refused_cleanly(stack: Stack) -> None:
    """A 3 MB text never reaches NATS (gRPC refuses it); a bad id is not echoed back."""
    big = 8 * 1024 * 1024
    async with grpc.aio.insecure_channel(stack.control_target, options=[
            ("grpc.max_send_message_length", big)]) as channel:
        control: ControlAsyncStub = ControlStub(channel)
        auth = (("authorization", f"Bearer {stack.control_token}"),)
        for request in (pb.SayRequest(call_id="c1", text="a" * 3_000_000),
                        pb.SayRequest(call_id="x" * 1_000_000, text="hi")):
            details = await expect(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   control.Say(request, metadata=auth))
            assert len(details) < 200
        bad_id = "bad/id." * 30_000  # 210 KB: under gRPC's bound, not a call id
        details = await expect(grpc.StatusCode.INVALID_ARGUMENT, control.GetCall(
            pb.GetCallRequest(call_id=bad_id), metadata=auth))
        assert len(details) < 100 and "bad/id" not in details
        details = await expect(grpc.StatusCode.INVALID_ARGUMENT, control.Say(
            pb.SayRequest(call_id="c1", text="a" * 2001), metadata=auth))
        assert details == "text is longer than 2000 characters"
        details = await expect(grpc.StatusCode.INVALID_ARGUMENT, control.Mute(
            pb.MuteRequest(call_id="no such/id"), metadata=auth))
        assert "no such" not in details
        await control.ListCalls(pb.ListCallsRequest(), metadata=auth)  # still serving
