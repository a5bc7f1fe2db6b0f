"""Control API commands for one call, served by the gateway that owns it.

Any gateway's gRPC server may receive a command; it travels over NATS (request/reply on
vb.rpc.call.<id>) to the owner, which runs it here against the live call. Errors carry a
gRPC status name so the receiving replica answers with the right code.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from nats.aio.msg import Msg

from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.control_pb2 import (
    CallCommand,
    CallCommandReply,
    CallInfo,
    CallState,
    CallSummary,
    TurnInfo,
)
from voxbus_common.agent import load_agent
from voxbus_common.bus import BadMessage, decode
from voxbus_gateway.ports import CommandedCall

log = logging.getLogger(__name__)

TARGET = re.compile(r"^(\+?[0-9]{3,20}|sip:[^\s<>]{3,200})$")
MAX_TEXT = 2000


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _text(value: str, what: str) -> str:
    text = value.strip()
    if not text:
        raise CommandError("INVALID_ARGUMENT", f"{what} is empty")
    if len(text) > MAX_TEXT:
        raise CommandError("INVALID_ARGUMENT", f"{what} is longer than {MAX_TEXT} characters")
    return text


class CallCommands:
    def __init__(self, call: CommandedCall) -> None:
        self.call = call

    async def on_command(self, msg: Msg) -> None:
        reply = CallCommandReply()
        try:
            await self.run(decode(CallCommand, msg.data), reply)
        except BadMessage as exc:
            reply.error, reply.error_code = str(exc), "INVALID_ARGUMENT"
        except CommandError as exc:
            reply.error, reply.error_code = str(exc), exc.code
        if msg.reply:
            await self.call.bus.nc.publish(msg.reply, reply.SerializeToString())

    async def run(self, cmd: CallCommand, reply: CallCommandReply) -> None:
        call, conv = self.call, self.call.conversation
        kind = cmd.WhichOneof("kind")
        if kind == "get":
            reply.info.CopyFrom(self.info())
            return
        if kind is None:
            raise CommandError("INVALID_ARGUMENT", "empty command")
        if call.ending:
            raise CommandError("FAILED_PRECONDITION", "the call is ending")
        if kind == "end":
            call.request_hangup(cmd.end.reason.strip()[:200] or "ended by the control API")
            reply.detail = "hanging up"
        elif kind == "say":
            text = _text(cmd.say.text, "text")
            if conv.agent_speaking:
                if not cmd.say.interrupt:
                    raise CommandError("FAILED_PRECONDITION",
                                       "the agent is speaking; set interrupt to cut it off")
                await conv.cancel_turn("the control API spoke")
            await conv.say(text)
            reply.detail = f"saying it as turn {conv.turn_counter}"
        elif kind == "inject":
            note = CallEvent.SystemNote(text=_text(cmd.inject.text, "text"))
            await call.control(conv.turn_counter, wait=True, system_note=note)
            reply.detail = "the model sees it from the next turn"
        elif kind == "transfer":
            target = cmd.transfer.target.strip()
            if not TARGET.fullmatch(target):
                raise CommandError("INVALID_ARGUMENT",
                                   "target must be a phone number (+15550100) or a sip: URI")
            await call.transfer(conv.turn_counter, target)
            reply.detail = f"transferring to {target}"
        elif kind in ("mute", "unmute"):
            conv.set_muted(kind == "mute")
            if conv.muted and conv.agent_speaking:
                await conv.cancel_turn("the agent was muted")
            reply.detail = "muted: listening only" if conv.muted else "unmuted"
        await call.watch({"type": "control", "command": kind, "detail": reply.detail})
        log.info("control command", extra={"command": kind})

    def summary(self) -> CallSummary:
        call = self.call
        settings = call.settings
        return CallSummary(
            call_id=call.call_id,
            state=CallState.CALL_STATE_ENDING if call.ending else CallState.CALL_STATE_ACTIVE,
            edge=call.edge.name, gateway_id=call.gateway_id,
            agent=load_agent(settings.agent_file).name if settings.agent_file else "",
            started_unix_ns=call.started_unix_ns, turns=call.conversation.turn_counter,
            muted=call.conversation.muted, has_caller=bool(call.caller))

    def info(self) -> CallInfo:
        turns = [TurnInfo.FromString(t) for t in self.call.turn_log]
        return CallInfo(summary=self.summary(), turns=turns)


def turn_record(event: dict[str, Any]) -> bytes:
    """A `turn` event as GetCall reports it, serialized: ~150 bytes a turn, not ~1 KB of dict
    (a long call keeps its last TURN_LOG_SIZE of them)."""
    return TurnInfo(turn_id=event["turn"], user_text=event["user_text"],
                    agent_text=event["agent_text"] or "", heard_text=event["heard_text"] or "",
                    interrupted=event["interrupted"],
                    latency_ms={k: v for k, v in event["latency_ms"].items() if v is not None}
                    ).SerializeToString()
