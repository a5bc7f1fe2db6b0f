"""Pure rules of long-term memory per caller: the record's key, its bounded list of notes,
the extractive fallback note, and the text a new call's context gets.

The key is the hex SHA-256 of the normalized identity, so the bucket never holds a phone
number in clear; "+1 (555) 010-0199" and "+15550100199" are the same caller.
"""

from __future__ import annotations

import hashlib
import re
import time

from voxbus.v1.memory_pb2 import CallerMemory, CallerNote, Session
from voxbus_memory.summary import unsummarized

MAX_IDENTITY_CHARS = 256
NOTE_MAX_CHARS = 400
CALLER_MEMORY_MAX_CHARS = 600

_SEPARATORS = re.compile(r"[\s\-()]+")


class BadCallerIdentity(ValueError):
    """An identity that cannot key long-term memory (too long)."""


def normalize_caller(identity: str) -> str:
    """Spaces, dashes and parentheses removed ("" stays anonymous)."""
    normalized = _SEPARATORS.sub("", identity)
    if len(normalized) > MAX_IDENTITY_CHARS:
        raise BadCallerIdentity(f"caller identity longer than {MAX_IDENTITY_CHARS} characters")
    return normalized


def caller_key(identity: str) -> str:
    """KV key of a caller's long-term memory: never the identity itself (privacy)."""
    normalized = normalize_caller(identity)
    if not normalized:
        raise BadCallerIdentity("caller identity is empty")
    return hashlib.sha256(normalized.encode()).hexdigest()


def truncate(text: str, max_chars: int, keep: str = "head") -> str:
    """At most `max_chars`, cut at a word boundary with an ellipsis; keep "head" or "tail"."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    if keep == "tail":
        cut = text[len(text) - max_chars + 1:]
        cut = cut.split(" ", 1)[1] if " " in cut else cut
        return "…" + cut
    cut = text[:max_chars - 1]
    cut = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return cut + "…"


def extractive_note(session: Session, max_chars: int = NOTE_MAX_CHARS) -> str:
    """A note without the LLM: the call's summary (if any) and the caller's own last words.
    "" when the caller said nothing worth keeping."""
    said = " / ".join(t.text for t in unsummarized(session) if t.role == "user")
    parts = [session.summary.strip()] if session.summary.strip() else []
    if said:
        room = max_chars - sum(len(p) + 1 for p in parts) - len("The caller said: ")
        if room > 40:
            parts.append("The caller said: " + truncate(said, room, keep="tail"))
    return truncate(" ".join(parts), max_chars) if parts else ""


def add_note(memory: CallerMemory, note: CallerNote, max_notes: int) -> bool:
    """Pure: remember one call (at most `max_notes`, oldest dropped). Returns False when the
    call is already there (a redelivered event) or would be dropped at once."""
    if not note.summary or any(n.call_id == note.call_id for n in memory.notes):
        return False
    notes = sorted([*memory.notes, note], key=lambda n: n.unix_ns)[-max(1, max_notes):]
    if all(n.call_id != note.call_id for n in notes):
        return False
    del memory.notes[:]
    memory.notes.extend(notes)
    return True


def replace_note(memory: CallerMemory, call_id: str, summary: str) -> bool:
    """Pure: a better summary for a call already remembered; False if it is gone (forgotten,
    dropped) or unchanged, so a late summary never resurrects a deleted note."""
    summary = summary.strip()
    for note in memory.notes:
        if note.call_id == call_id:
            if not summary or note.summary == summary:
                return False
            note.summary = summary
            return True
    return False


def caller_memory_text(memory: CallerMemory | None, current_call: str = "",
                       max_chars: int = CALLER_MEMORY_MAX_CHARS) -> str:
    """The earlier calls' notes for a context reply, one line each, newest last; the oldest
    are dropped first to stay within `max_chars`."""
    if memory is None:
        return ""
    lines: list[str] = []
    total = 0
    for note in sorted(memory.notes, key=lambda n: n.unix_ns, reverse=True):
        if note.call_id == current_call or not note.summary:
            continue
        day = time.strftime("%Y-%m-%d", time.gmtime(note.unix_ns / 1e9))
        line = f"{day}: {note.summary}"
        if total + len(line) + 1 > max_chars:
            if not lines:
                lines.append(truncate(line, max_chars))
            break
        lines.append(line)
        total += len(line) + 1
    return "\n".join(reversed(lines))
