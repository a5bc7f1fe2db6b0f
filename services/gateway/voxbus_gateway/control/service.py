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
from google.protobuf.struct_pb2 import Struct
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import KeyNotFoundError

from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlServicer
from voxbus.v1.memory_pb2 import Session
from voxbus_common import subjects
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.config import Settings
from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_common.tokens import MediaTokens
from voxbus_gateway.control.auth import ControlAuth
from voxbus_gateway.control.outbound import OutboundError, start_twilio_call
from voxbus_gateway.turn import latency_breakdown

log = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
COMMAND_TIMEOUT_S = 5.0
GATHER_S = 0.3  # ListCalls: how long gateways get to answer (scatter-gather)


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
    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.auth = ControlAuth(settings.control_tokens, settings.control_jwt_secret,
                                settings.control_admin_tokens, settings.control_allow_loopback)

    async def _call_id(self, raw: str, context: Context) -> str:
        await self.auth.require(context)
        try:
            return validate_call_id(raw)
        except InvalidCallId as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

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
        if reply.error:
            code = getattr(grpc.StatusCode, reply.error_code, grpc.StatusCode.INTERNAL)
            await context.abort(code, reply.error)
        return reply

    async def _live(self, call_id: str, cmd: pb.CallCommand, context: Context) -> pb.CommandReply:
        reply = await self._command(call_id, cmd, context)
        if reply is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no live call {call_id}")
        return pb.CommandReply(call_id=call_id, detail=reply.detail)

    async def _steer(self, raw_id: str, context: Context, **command: Any) -> pb.CommandReply:
        call_id = await self._call_id(raw_id, context)
        return await self._live(call_id, pb.CallCommand(**command), context)

    # -- reading ------------------------------------------------------------------------------

    async def ListCalls(self, request: pb.ListCallsRequest,
                        context: Context) -> pb.ListCallsResponse:
        await self.auth.require(context)
        inbox = self.bus.nc.new_inbox()
        sub = await self.bus.nc.subscribe(inbox)
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
        finally:
            await sub.unsubscribe()
        calls = [c for c in calls if (not request.state or c.state == request.state)
                 and (not request.agent or c.agent == request.agent)]
        calls.sort(key=lambda c: c.started_unix_ns)
        return pb.ListCallsResponse(calls=calls)

    async def GetCall(self, request: pb.GetCallRequest, context: Context) -> pb.CallInfo:
        call_id = await self._call_id(request.call_id, context)
        reply = await self._command(call_id, pb.CallCommand(get=request), context)
        if reply is not None:
            return reply.info
        session: Session | None = None
        with contextlib.suppress(KeyNotFoundError):
            entry = await (await self.bus.sessions_kv()).get(call_id)
            session = decode(Session, entry.value or b"")
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
        await self.auth.require(context)
        sub, queue = await self._subscribe(subjects.WATCH_ALL)
        await context.send_initial_metadata(())
        async for update in self._stream(sub, queue, until_ended=False):
            yield update

    # -- steering -----------------------------------------------------------------------------

    async def EndCall(self, request: pb.EndCallRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request.call_id, context, end=request)

    async def Say(self, request: pb.SayRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request.call_id, context, say=request)

    async def Inject(self, request: pb.InjectRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request.call_id, context, inject=request)

    async def Transfer(self, request: pb.TransferRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request.call_id, context, transfer=request)

    async def Mute(self, request: pb.MuteRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request.call_id, context, mute=request)

    async def Unmute(self, request: pb.MuteRequest, context: Context) -> pb.CommandReply:
        return await self._steer(request.call_id, context, unmute=request)

    # -- outside calls ------------------------------------------------------------------------

    async def StartCall(self, request: pb.StartCallRequest,
                        context: Context) -> pb.StartCallResponse:
        await self.auth.require(context)
        try:
            sid = await start_twilio_call(self.settings, request)
        except OutboundError as exc:
            await context.abort(exc.code, str(exc))
        return pb.StartCallResponse(carrier_call_id=sid)

    async def IssueMediaToken(self, request: pb.IssueMediaTokenRequest,
                              context: Context) -> pb.MediaToken:
        await self.auth.require(context)
        tokens = MediaTokens(self.settings.media_token_keys)
        if not tokens.enabled:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "no media token keys configured (VOXBUS_MEDIA_TOKEN_KEYS)")
        if request.call_id:
            await self._call_id(request.call_id, context)
        ttl = request.ttl_s or 300
        if not 1 <= ttl <= 24 * 3600:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ttl_s must be 1..86400")
        token = tokens.issue(subject=request.subject[:128] or "caller", call_id=request.call_id,
                             ttl_s=ttl)
        return pb.MediaToken(token=token, expires_unix=int(time.time()) + ttl)
