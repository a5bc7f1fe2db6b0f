"""Applies the gateway's call events to the stored session, and answers context requests
(this call's summary and the turns after it, plus the caller's long-term memory)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from nats.aio.msg import Msg

from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.llm_pb2 import ContextReply, ContextRequest
from voxbus.v1.memory_pb2 import Session, TurnRecord
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_common.logs import call_id_var
from voxbus_common.metrics import observe_hop
from voxbus_common.session_pages import turn_order
from voxbus_common.telemetry import extract_context, tracer
from voxbus_memory.callers import BadCallerIdentity, normalize_caller
from voxbus_memory.compaction import Compactor
from voxbus_memory.longterm import LongTermMemory
from voxbus_memory.store import SessionStore
from voxbus_memory.summary import context_messages, estimate_tokens

__all__ = ["Recorder", "apply_event", "context_messages"]

log = logging.getLogger(__name__)

TURN_KINDS = ("user_turn", "agent_turn", "system_note")  # recorded in pages


def _keep(text: str) -> str:
    return text


def apply_event(session: Session, event: CallEvent,
                redact: Callable[[str], str] = _keep) -> bool:
    """Pure: fold one call event into the session (texts through `redact` before they are
    stored). Returns False if nothing changed."""
    kind = event.WhichOneof("kind")
    turn_id = event.meta.turn_id
    if kind == "started":
        if session.started_unix_ns:
            return False
        session.started_unix_ns = event.meta.sent_unix_ns
        session.edge = event.started.edge
        try:
            session.caller = normalize_caller(event.started.caller)
        except BadCallerIdentity as exc:
            log.warning("caller identity ignored: %s", exc)
        return True
    if kind == "ended":
        if session.ended_unix_ns:
            return False
        session.ended_unix_ns = event.meta.sent_unix_ns
        session.ended_reason = redact(event.ended.reason)  # "transferred to <number>"
        return True
    if kind == "user_turn":
        record = TurnRecord(turn_id=turn_id, role="user", text=redact(event.user_turn.text),
                            unix_ns=event.meta.sent_unix_ns)
    elif kind == "agent_turn":
        a = event.agent_turn
        record = TurnRecord(turn_id=turn_id, role="assistant", text=redact(a.heard_text),
                            interrupted=a.interrupted, unix_ns=event.meta.sent_unix_ns,
                            timings=a.timings)
    elif kind == "system_note":
        record = TurnRecord(turn_id=turn_id, role="system", text=redact(event.system_note.text),
                            unix_ns=event.meta.sent_unix_ns)
    else:
        return False
    if any(t.turn_id == record.turn_id and t.role == record.role and (
            t.role != "system" or t.text == record.text) for t in session.turns):
        return False  # redelivered event: already applied (several notes may share a turn)
    turns = sorted([*session.turns, record], key=turn_order)
    del session.turns[:]
    session.turns.extend(turns)
    return True


class Recorder:
    """The memory service's bus handlers: call events in, context replies out."""

    def __init__(self, bus: Bus, store: SessionStore,
                 redact: Callable[[str], str] = _keep,
                 compactor: Compactor | None = None,
                 longterm: LongTermMemory | None = None) -> None:
        self.bus = bus
        self.store = store
        self.redact = redact
        self.compactor = compactor
        self.longterm = longterm

    async def on_event(self, msg: Msg) -> None:
        event = decode(CallEvent, msg.data)
        call_id_var.set(validate_call_id(event.meta.call_id))
        observe_hop("call_event", event.meta.sent_unix_ns, time.time_ns())
        call_id, kind = event.meta.call_id, event.WhichOneof("kind")

        def change(session: Session) -> bool:
            return apply_event(session, event, self.redact)

        if kind in TURN_KINDS:  # one bounded page, not the whole call (session_pages.py)
            header = await self.store.append(call_id, event.meta.turn_id, change)
        else:
            header = await self.store.mutate(call_id, change)
        if kind in ("user_turn", "agent_turn") and self.compactor is not None:
            said = event.user_turn.text if kind == "user_turn" else event.agent_turn.heard_text
            self.compactor.maybe_schedule(header, estimate_tokens(said))  # never awaited
        if kind == "ended" and self.compactor is not None:
            self.compactor.forget(call_id)
        if kind == "ended" and self.longterm is not None:
            whole = await self.store.whole(call_id) or header
            await self.longterm.on_call_ended(whole)  # also on redelivery: idempotent

    async def answer_context(self, data: bytes, headers: dict[str, str] | None) -> bytes:
        """RPC (rpc.py): the conversation so far for a turn, or a reply with the error."""
        with tracer().start_as_current_span("memory.context", context=extract_context(headers)):
            return (await self._context(data)).SerializeToString()

    async def _context(self, data: bytes) -> ContextReply:
        reply = ContextReply()
        try:
            req = decode(ContextRequest, data)
            reply.meta.CopyFrom(req.meta)
            validate_call_id(req.meta.call_id)
            session = await self.store.turns(req.meta.call_id, None, req.meta.turn_id)
            reply.messages.extend(context_messages(session, req.meta.turn_id,
                                                   req.max_messages or 12))
            if session is not None:
                reply.summary = session.summary
                reply.caller_memory = await self._caller_memory(session)
        except (BadMessage, InvalidCallId) as exc:
            reply.error = str(exc)
        except Exception as exc:
            log.exception("context request failed")
            reply.error = f"{type(exc).__name__}: {exc}"
        return reply

    async def _caller_memory(self, session: Session) -> str:
        """Long-term memory is a bonus: when it cannot be read the turn still gets its history."""
        if self.longterm is None:
            return ""
        try:
            return await self.longterm.context_text(session)
        except Exception as exc:
            log.warning("caller memory unavailable: %s", f"{type(exc).__name__}: {exc}")
            return ""
