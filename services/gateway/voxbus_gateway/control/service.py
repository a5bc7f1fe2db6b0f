"""The Control servicer. Any gateway replica answers any request: commands for a call go over
NATS to the gateway that owns it (commands.py), lists are gathered from every gateway, ended
calls are read from memory's session store, live events come from vb.call.<id>.watch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
import nats.errors
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlServicer
from voxbus.v1.memory_pb2 import Session
from voxbus_common import subjects
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.config import GatewayService
from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_common.session_pages import read_session
from voxbus_common.tokens import MediaTokens
from voxbus_gateway.commands import MAX_TEXT
from voxbus_gateway.control.auth import ControlAuth
from voxbus_gateway.control.outbound import OutboundError, start_twilio_call
from voxbus_gateway.turn import latency_breakdown

log = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
COMMAND_TIMEOUT_S = 5.0
GATHER_S = 0.3  # ListCalls: how long gateways get to answer (scatter-gather)

# Request bounds: every string a client sends is bounded before it is used or forwarded over
# NATS. A violation is INVALID_ARGUMENT naming the field and its limit, never echoing the value
# (a megabyte id came back in the error). gRPC refuses requests over MAX_REQUEST_BYTES itself.
MAX_REQUEST_BYTES = 256 * 1024  # grpc.max_receive_message_length (control/server.py)
MAX_CALL_ID = 64  # one NATS subject token (voxbus_common.ids)
MAX_TEXT_CHARS = MAX_TEXT  # Say, Inject: what the owning gateway accepts (commands.py)
MAX_REASON = 200  # EndCall: kept with the ended call
MAX_TARGET = 256  # Transfer: an E.164 number or a sip: URI
MAX_AGENT = 128  # ListCalls: an agent file's name
MAX_NUMBER = 32  # StartCall: an E.164 number has at most 16 characters
MAX_CARRIER = 32
MAX_SUBJECT = 128  # IssueMediaToken: a caller identity (the key of its long-term memory)
FIELD_LIMITS: dict[str, dict[str, int]] = {  # request message -> string field -> characters
    "ListCallsRequest": {"agent": MAX_AGENT},
    "GetCallRequest": {"call_id": MAX_CALL_ID},
    "WatchCallRequest": {"call_id": MAX_CALL_ID},
    "WatchCallsRequest": {},
    "EndCallRequest": {"call_id": MAX_CALL_ID, "reason": MAX_REASON},
    "SayRequest": {"call_id": MAX_CALL_ID, "text": MAX_TEXT_CHARS},
    "InjectRequest": {"call_id": MAX_CALL_ID, "text": MAX_TEXT_CHARS},
    "TransferRequest": {"call_id": MAX_CALL_ID, "target": MAX_TARGET},
    "MuteRequest": {"call_id": MAX_CALL_ID},
    "StartCallRequest": {"to": MAX_NUMBER, "from": MAX_NUMBER, "carrier": MAX_CARRIER},
    "IssueMediaTokenRequest": {"subject": MAX_SUBJECT, "call_id": MAX_CALL_ID},
}
CALL_ID_RULE = ("call_id must be 1-64 characters from A-Z a-z 0-9 _ - "
                "(one NATS subject token)")


def oversized(request: Message) -> str:
    """"" when every string field is within its limit, else which one is not (no value)."""
    for name, limit in FIELD_LIMITS[request.DESCRIPTOR.name].items():
        if len(getattr(request, name)) > limit:
            return f"{name} is longer than {limit} characters"
    return ""


def session_info(session: Session) -> pb.CallInfo:
    """An ended (or orphaned) call as memory recorded it; texts are redacted there."""
    turns: dict[int, pb.TurnInfo] = {}
    for record in session.turns:
        turn = turns.setdefault(record.turn_id, pb.TurnInfo(turn_id=record.turn_id))
        if record.role == "user":
            turn.user_text = record.text
        elif record.role == "assistant":
            turn.heard_text, turn.interrupted = record.text, record.interrupted
            turn.latency_ms.update({k: v for k, v in latency_breakdown(record.timings).items()
                                    if v is not None})
    state = pb.CALL_STATE_ENDED if session.ended_unix_ns else pb.CALL_STATE_ACTIVE
    summary = pb.CallSummary(call_id=session.call_id, state=state, edge=session.edge,
                             started_unix_ns=session.started_unix_ns,
                             turns=max(turns, default=0), has_caller=bool(session.caller))
    return pb.CallInfo(summary=summary, turns=list(turns.values()),
                       ended_reason=session.ended_reason)


def update_of(msg: Msg) -> pb.CallUpdate | None:
    try:
        event: dict[str, Any] = json.loads(msg.data)
    except ValueError:
        return None
    data = Struct()
    data.update({k: v for k, v in event.items() if k != "type"})
    return pb.CallUpdate(call_id=subjects.call_id_of(msg.subject), type=str(event.get("type")),
                         data=data, unix_ns=time.time_ns())


class ControlService(ControlServicer):
    def __init__(self, bus: Bus, settings: GatewayService) -> None:
        self.bus = bus
        self.settings = settings
        self.auth = ControlAuth(settings.control_tokens, settings.control_jwt_secret,
                                settings.control_admin_tokens, settings.control_allow_loopback)

    async def _checked(self, request: Message, context: Context, admin: bool = False) -> None:
        """Auth first (a peer without a token learns nothing), then the field bounds."""
        await self.auth.require(context, admin=admin)
        if why := oversized(request):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)

    async def _call_id(self, raw: str, context: Context) -> str:
        """A checked request's call id, validated (the error does not repeat it)."""
        try:
            return validate_call_id(raw)
        except InvalidCallId:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, CALL_ID_RULE)

    async def _command(self, call_id: str, cmd: pb.CallCommand,
                       context: Context) -> pb.CallCommandReply | None:
        """Run a command at the owning gateway; None when no gateway owns the call."""
        try:
            msg = await self.bus.nc.request(subjects.rpc_call(call_id), cmd.SerializeToString(),
                                            timeout=COMMAND_TIMEOUT_S)
            reply = decode(pb.CallCommandReply, msg.data)
        except nats.errors.NoRespondersError:
            return None
        except (nats.errors.TimeoutError, BadMessage) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"the gateway owning {call_id} did not answer: {exc}")
        except nats.errors.MaxPayloadError:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                "the command is larger than the bus carries")
        except nats.errors.Error as exc:  # not connected, buffer full, ...: not UNKNOWN
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"the bus refused the command ({type(exc).__name__})")
        if reply.error:
            code = getattr(grpc.StatusCode, reply.error_code, grpc.StatusCode.INTERNAL)
            await context.abort(code, reply.error)
        return reply

    async def _live(self, call_id: str, cmd: pb.CallCommand, context: Context) -> pb.CommandReply:
        reply = await self._command(call_id, cmd, context)
        if reply is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no live call {call_id}")
        return pb.CommandReply(call_id=call_id, detail=reply.detail)

    async def _steer(self, request: Any, context: Context, **command: Any) -> pb.CommandReply:
        await self._checked(request, context)
        call_id = await self._call_id(request.call_id, context)
        return await self._live(call_id, pb.CallCommand(**command), context)

    # -- reading ------------------------------------------------------------------------------

    async def ListCalls(self, request: pb.ListCallsRequest,
                        context: Context) -> pb.ListCallsResponse:
        await self._checked(request, context)
        inbox = self.bus.nc.new_inbox()
        try:
            sub = await self.bus.nc.subscribe(inbox)
        except nats.errors.Error as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"the bus is not available ({type(exc).__name__})")
        calls: list[pb.CallSummary] = []
        try:
            await self.bus.nc.publish(subjects.RPC_GATEWAY_CALLS, b"", reply=inbox)
            deadline = time.monotonic() + GATHER_S
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=remaining)
                except (nats.errors.TimeoutError, TimeoutError):
                    break
                with contextlib.suppress(BadMessage):
                    calls.extend(decode(pb.GatewayCalls, msg.data).calls)
        except nats.errors.Error as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"the bus is not available ({type(exc).__name__})")
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        calls = [c for c in calls if (not request.state or c.state == request.state)
                 and (not request.agent or c.agent == request.agent)]
        calls.sort(key=lambda c: c.started_unix_ns)
        return pb.ListCallsResponse(calls=calls)

    async def GetCall(self, request: pb.GetCallRequest, context: Context) -> pb.CallInfo:
        await self._checked(request, context)
        call_id = await self._call_id(request.call_id, context)
        reply = await self._command(call_id, pb.CallCommand(get=request), context)
        if reply is not None:
            return reply.info
        session = await read_session(await self.bus.sessions_kv(), call_id)
        if session is None or not session.call_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no call {call_id}")
        return session_info(session)

    async def _subscribe(self, subject: str) -> tuple[Subscription, asyncio.Queue[Msg]]:
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=1000)

        async def on_event(msg: Msg) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a slow watcher loses events
                queue.put_nowait(msg)

        return await self.bus.nc.subscribe(subject, cb=on_event), queue

    async def _stream(self, sub: Subscription, queue: asyncio.Queue[Msg],
                      until_ended: bool) -> AsyncIterator[pb.CallUpdate]:
        try:
            while True:
                update = update_of(await queue.get())
                if update is None:
                    continue
                yield update
                if until_ended and update.type == "call_ended":
                    return
        finally:
            await sub.unsubscribe()

    async def WatchCall(self, request: pb.WatchCallRequest,
                        context: Context) -> AsyncIterator[pb.CallUpdate]:
        await self._checked(request, context)
        call_id = await self._call_id(request.call_id, context)
        sub, queue = await self._subscribe(subjects.watch(call_id))  # before the check
        get = pb.CallCommand(get=pb.GetCallRequest(call_id=call_id))
        try:
            live = await self._command(call_id, get, context) is not None
        except BaseException:
            await sub.unsubscribe()
            raise
        if not live:
            await sub.unsubscribe()
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no live call {call_id}")
        await context.send_initial_metadata(())  # tells the client it is subscribed
        async for update in self._stream(sub, queue, until_ended=True):
            yield update

    async def WatchCalls(self, request: pb.WatchCallsRequest,
                         context: Context) -> AsyncIterator[pb.CallUpdate]:
        await self._checked(request, context)
        sub, queue = await self._subscribe(subjects.WATCH_ALL)
        await context.send_initial_metadata(())
        async for update in self._stream(sub, queue, until_ended=False):
            yield update

    # -- steering -----------------------------------------------------------------------------

    async def EndCall(self, request: pb.EndCallRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request, context, end=request)

    async def Say(self, request: pb.SayRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request, context, say=request)

    async def Inject(self, request: pb.InjectRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request, context, inject=request)

    async def Transfer(self, request: pb.TransferRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request, context, transfer=request)

    async def Mute(self, request: pb.MuteRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request, context, mute=request)

    async def Unmute(self, request: pb.MuteRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request, context, unmute=request)

    # -- outside calls ------------------------------------------------------------------------

    async def StartCall(self, request: pb.StartCallRequest,
                        context: Context) -> pb.StartCallResponse:
        await self._checked(request, context)
        try:
            sid = await start_twilio_call(self.settings, request)
        except OutboundError as exc:
            await context.abort(exc.code, str(exc))
        return pb.StartCallResponse(carrier_call_id=sid)

    async def IssueMediaToken(self, request: pb.IssueMediaTokenRequest,
                              context: Context) -> pb.MediaToken:
        """Admin scope only: a media token's subject is the key to a caller's memory."""
        await self._checked(request, context, admin=True)
        tokens = MediaTokens(self.settings.media_token_keys)
        if not tokens.enabled:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "no media token keys configured (VOXBUS_MEDIA_TOKEN_KEYS)")
        if request.call_id:
            await self._call_id(request.call_id, context)
        ttl = request.ttl_s or 300
        if not 1 <= ttl <= 24 * 3600:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ttl_s must be 1..86400")
        token = tokens.issue(subject=request.subject or "caller", call_id=request.call_id,
                             ttl_s=ttl)
        return pb.MediaToken(token=token, expires_unix=int(time.time()) + ttl)
