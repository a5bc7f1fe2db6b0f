"""Pure rules of short-term memory compaction: when a call is summarized, which turns the
summary covers, and how a summary lands in the session without losing concurrent turns.

Token counts are estimates (no tokenizer in the memory service): the larger of
words × 1.3 and characters / 4. English prose is ~1.3 tokens per word; text without spaces
(digits, URLs, CJK) is counted by length instead, so it is never under-counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from voxbus.v1.llm_pb2 import ChatMessage
from voxbus.v1.memory_pb2 import Session, TurnRecord


def estimate_tokens(text: str) -> int:
    """Rough token count of `text` (see the module docstring)."""
    if not text:
        return 0
    return max(math.ceil(len(text.split()) * 1.3), math.ceil(len(text) / 4))


def unsummarized(session: Session) -> list[TurnRecord]:
    """Turn records with text that the session's summary does not cover yet, oldest first."""
    return [t for t in session.turns if t.turn_id > session.summarized_through and t.text]


def to_messages(records: Sequence[TurnRecord]) -> list[ChatMessage]:
    return [ChatMessage(role=t.role, content=t.text, interrupted=t.interrupted) for t in records]


@dataclass(frozen=True)
class SummaryPlan:
    """Summarize `previous_summary` + `messages` into a summary of turns <= `through`."""

    through: int
    previous_summary: str
    messages: list[ChatMessage]


def plan_summary(session: Session, budget_tokens: int, keep_recent: int,
                 max_chunk_tokens: int = 0) -> SummaryPlan | None:
    """What to summarize now, or None when the call is within budget (or budget <= 0).

    The newest `keep_recent` messages stay verbatim, and so does the newest turn (its agent
    record may still be on its way). The cut is at a turn boundary, so a turn's user and
    agent records are summarized together. At most `max_chunk_tokens` (0 = no limit; at least
    one turn) go into one request, so it fits a small model's context; the rest is left for
    the next round.
    """
    if budget_tokens <= 0:
        return None
    pending = unsummarized(session)
    if sum(estimate_tokens(t.text) for t in pending) <= budget_tokens:
        return None
    cut = max(t.turn_id for t in pending)  # turns < cut may be summarized
    if keep_recent > 0:
        cut = min(cut, pending[-min(keep_recent, len(pending))].turn_id)
    older = [t for t in pending if t.turn_id < cut]
    if not older:
        return None
    chosen: list[TurnRecord] = []
    total = 0
    for record in older:
        tokens = estimate_tokens(record.text)
        new_turn = not chosen or record.turn_id != chosen[-1].turn_id
        if max_chunk_tokens > 0 and chosen and new_turn and total + tokens > max_chunk_tokens:
            break
        chosen.append(record)
        total += tokens
    return SummaryPlan(through=chosen[-1].turn_id, previous_summary=session.summary,
                       messages=to_messages(chosen))


def apply_summary(session: Session, through: int, summary: str) -> bool:
    """Pure: store a summary of turns <= `through`. Turns are left alone, so a re-read
    session with concurrently appended turns keeps them; a summary that is not newer than the
    stored one (another replica got there first) changes nothing: it never goes back."""
    summary = summary.strip()
    if not summary or through <= session.summarized_through:
        return False
    session.summary = summary
    session.summarized_through = through
    return True


def context_messages(session: Session | None, before_turn: int, limit: int) -> list[ChatMessage]:
    """The verbatim conversation before `before_turn` that the summary does not cover,
    oldest first, at most `limit` messages (0 = all).

    Beyond `limit` the oldest are dropped half a window at a time, not one by one: the
    window's start then stays put for several turns, so a local model server finds the
    conversation it evaluated last turn as a prefix of this one and evaluates only the new
    messages, instead of all of them after every slide."""
    if session is None:
        return []
    records = [t for t in unsummarized(session) if t.turn_id < before_turn]
    messages = to_messages(records)
    if limit <= 0 or len(messages) <= limit:
        return messages
    step = max(1, limit // 2)
    start = -(-(len(messages) - limit) // step) * step  # overflow rounded up to whole steps
    return messages[start:]


def newest_messages(session: Session, max_tokens: int) -> list[ChatMessage]:
    """The newest unsummarized messages within `max_tokens` (at least one), oldest first:
    the bounded input of a call's closing summary."""
    picked: list[TurnRecord] = []
    total = 0
    for record in reversed(unsummarized(session)):
        total += estimate_tokens(record.text)
        if picked and total > max_tokens:
            break
        picked.append(record)
    return to_messages(picked[::-1])
