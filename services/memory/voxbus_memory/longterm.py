"""Long-term memory per caller: a note per ended call, what a new call's context gets, and
deletion on request.

When a call with a caller identity ends, an extractive note (made from stored, redacted
turns) is written at once, inside the event handler, so an at-least-once redelivery or a
crash never loses it; a background task then asks the LLM for a proper summary and replaces
the note's text. Without an LLM the extractive note stays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from voxbus.v1.memory_pb2 import (
    CallerMemory,
    CallerNote,
    ForgetCallerReply,
    ForgetCallerRequest,
    Session,
)
from voxbus_common.bus import BadMessage, Bus, decode
from voxbus_common.config import MemoryService
from voxbus_common.ids import InvalidCallId, validate_call_id
from voxbus_common.metrics import ERRORS
from voxbus_memory.callers import (
    NOTE_MAX_CHARS,
    BadCallerIdentity,
    add_note,
    caller_key,
    caller_memory_text,
    extractive_note,
    replace_note,
    truncate,
)
from voxbus_memory.compaction import SummaryFailed, ask_summary
from voxbus_memory.store import CallerStore, SessionStore
from voxbus_memory.summary import newest_messages

log = logging.getLogger(__name__)

NOTE_INPUT_TOKENS = 1200  # newest turns sent for a closing summary (fits a small model)


class LongTermMemory:
    def __init__(self, bus: Bus, sessions: SessionStore, callers: CallerStore,
                 settings: MemoryService, redact: Callable[[str], str]) -> None:
        self.bus = bus
        self.sessions = sessions
        self.callers = callers
        self.settings = settings
        self.redact = redact
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.caller_memory

    async def on_call_ended(self, session: Session) -> None:
        """Remember the call for its caller (idempotent: one note per call id)."""
        if not self.enabled or not session.caller:
            return
        text = self.redact(extractive_note(session))
        if not text:
            return
        key = caller_key(session.caller)
        note = CallerNote(call_id=session.call_id, summary=text,
                          unix_ns=session.ended_unix_ns or time.time_ns())
        added = False

        def change(memory: CallerMemory) -> bool:
            nonlocal added
            added = add_note(memory, note, self.settings.caller_notes_max)
            return added

        await self.callers.mutate(key, change)
        if not added:
            return
        log.info("caller note stored", extra={"notes_max": self.settings.caller_notes_max})
        task = asyncio.create_task(self._summarize_note(key, session),
                                   name=f"caller-note-{session.call_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _summarize_note(self, key: str, session: Session) -> None:
        """Replace the extractive note with the LLM's summary of the whole call."""
        messages = newest_messages(session, NOTE_INPUT_TOKENS)
        if not messages:
            return  # the call's summary is the note already
        try:
            summary = await ask_summary(self.bus, self.settings, session.call_id,
                                        session.summary, messages)
        except SummaryFailed as exc:
            ERRORS.labels("memory", "summary_failed").inc()
            log.warning("caller note kept extractive: %s", exc)
            return
        text = truncate(self.redact(summary), NOTE_MAX_CHARS)
        try:
            await self.callers.mutate(key, lambda m: replace_note(m, session.call_id, text))
        except Exception as exc:
            log.warning("caller note not updated: %s", f"{type(exc).__name__}: {exc}")
            return
        log.info("caller note summarized", extra={"summary_chars": len(text)})

    async def context_text(self, session: Session) -> str:
        """What earlier calls of this session's caller left ("" if none or switched off)."""
        if not self.enabled or not session.caller:
            return ""
        memory = await self.callers.read(caller_key(session.caller))
        return caller_memory_text(memory, current_call=session.call_id)

    async def answer_forget(self, data: bytes) -> bytes:
        """RPC (rpc.py): delete a caller's long-term record and the sessions of the calls it
        lists; a bad request gets a reply with the error."""
        reply = ForgetCallerReply()
        try:
            req = decode(ForgetCallerRequest, data)
            reply.CopyFrom(await self.forget(req.caller))
        except (BadMessage, BadCallerIdentity) as exc:
            reply.error = str(exc)
        except Exception as exc:
            log.exception("forget request failed")
            reply.error = f"{type(exc).__name__}: {exc}"
        return reply.SerializeToString()

    async def forget(self, identity: str) -> ForgetCallerReply:
        key = caller_key(identity)
        memory = await self.callers.get(key)
        reply = ForgetCallerReply()
        if memory is not None:
            for note in memory.notes:
                try:
                    call_id = validate_call_id(note.call_id)
                except InvalidCallId:
                    continue
                if await self.sessions.purge(call_id):
                    reply.calls_deleted += 1
            reply.memory_deleted = await self.callers.purge(key)
        log.info("caller forgotten", extra={"calls_deleted": reply.calls_deleted,
                                            "memory_deleted": reply.memory_deleted})
        return reply

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
