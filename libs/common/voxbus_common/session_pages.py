"""A call's session in the vb_sessions bucket: a small header and bounded pages of turns.

The key `<call_id>` holds the header (start, end, caller, summary, `pages`); the turns
live in pages `<call_id>.p<n>`, page n holding the turns with `turn_id // PAGE_TURNS == n`.
A turn event rewrites only its page (at most PAGE_TURNS turns), never the whole call, so a
write costs the same at turn 500 as at turn 5. A page is found from the turn id alone, so a
redelivered or late event lands on the page that already holds it (no duplicates), and a
reader asks for exactly the pages it needs: the context of a turn reads the header and the
pages after the summary, not the call's whole history. Records written before pages (turns
inside the header) are still read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from voxbus.v1.memory_pb2 import Session, TurnRecord

PAGE_TURNS = 8  # turn ids per page: a page holds ~2 records per turn, plus notes
ROLE_ORDER = {"user": 0, "assistant": 1, "system": 2}  # a note applies after its turn


def page_of(turn_id: int) -> int:
    return max(0, turn_id) // PAGE_TURNS


def page_key(call_id: str, page: int) -> str:
    return f"{call_id}.p{page}"


def call_of(key: str) -> str:
    """The call id of a header or page key."""
    return key.split(".", 1)[0]


def turn_order(record: TurnRecord) -> tuple[int, int]:
    return record.turn_id, ROLE_ORDER.get(record.role, 3)


def merged(header: Session, pages: Iterable[Session]) -> Session:
    """The session as one message: the header's fields and every page's turns, in order."""
    session = Session()
    session.CopyFrom(header)
    turns = [*header.turns, *(t for page in pages for t in page.turns)]
    del session.turns[:]
    session.turns.extend(sorted(turns, key=turn_order))
    return session


async def _get(kv: KeyValue, key: str) -> Session | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    return Session.FromString(entry.value)


async def read_pages(kv: KeyValue, call_id: str, first: int, last: int) -> list[Session]:
    """Pages `first`..`last` that exist, read in parallel."""
    found = await asyncio.gather(*(_get(kv, page_key(call_id, n))
                                   for n in range(first, last + 1)))
    return [page for page in found if page is not None]


async def read_session(kv: KeyValue, call_id: str, *, from_turn: int | None = 0,
                       before_turn: int | None = None) -> Session | None:
    """The header and the turns with `from_turn <= turn_id < before_turn` (page-exact:
    whole pages are read, so a few turns outside the range may come too); None when the
    call has no session. The defaults read the whole call; `from_turn=None` starts after
    the turns the summary covers (what a turn's context and the next summary need)."""
    header = await _get(kv, call_id)
    if header is None:
        return None
    if from_turn is None:
        from_turn = header.summarized_through + 1
    # (with a bound, its pages are read even if the header's count lags the newest)
    last = header.pages - 1 if before_turn is None else page_of(before_turn - 1)
    first = page_of(from_turn)
    pages = await read_pages(kv, call_id, first, last) if last >= first else []
    return merged(header, pages)
