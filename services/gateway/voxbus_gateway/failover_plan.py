"""Who carries a dead STT replica's calls on, and in which order: a pure plan, testable
without NATS (stt_watch.py sends it).

- **Spread by load.** Each call goes to the survivor with the lowest share of its capacity
  in use, counting the calls planned for it so far (water-filling over the `calls`/`max`
  of the survivors' heartbeats): three survivors at 40, 60 and 60 of 200 take a dead
  replica's 60 calls as 40, 10 and 10, not 60 on whichever pulled the queue first.
- **Newest audio first.** Calls whose caller has an utterance open (spoken, no final
  transcript yet) come first, the most recent speech first: their turns are what the
  caller waits on. A caller who is listening has nothing to transcribe yet and comes last.
- **Paced** by the sender: each survivor gets `window` calls at a time, the next when one of
  them has replayed up to the live audio (stt_watch.py), so a survivor is never handed more
  replay than it can do while keeping its own calls live.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Orphan:
    """One of the dead replica's calls, as this gateway sees it."""

    call_id: str
    utterance_open: bool  # the caller spoke and its final transcript has not come
    last_speech: float  # monotonic time of the caller's last VAD event (0: never spoke)


@dataclass(frozen=True)
class Load:
    """A survivor's load from its last heartbeat."""

    calls: int
    max_calls: int


def priority(orphans: list[Orphan]) -> list[Orphan]:
    """Open utterances first, then by the caller's latest speech, newest first."""
    return sorted(orphans, key=lambda o: (not o.utterance_open, -o.last_speech))


def assign(orphans: list[Orphan], survivors: dict[str, Load]) -> list[tuple[Orphan, str]]:
    """(call, survivor) in priority order, each call to the least loaded survivor that
    still has room; a call with no room anywhere goes to the one with the most (its
    queue refusal sends it on to the work queue). No survivors: no assignment."""
    if not survivors:
        return []
    planned = {name: 0 for name in survivors}

    def share(name: str) -> tuple[float, str]:
        load = survivors[name]
        return ((load.calls + planned[name]) / max(1, load.max_calls), name)

    plan: list[tuple[Orphan, str]] = []
    for orphan in priority(orphans):
        name = min(survivors, key=share)
        planned[name] += 1
        plan.append((orphan, name))
    return plan


def by_survivor(plan: list[tuple[Orphan, str]]) -> dict[str, list[Orphan]]:
    """Each survivor's calls in the plan's order (what its paced sender works through)."""
    lanes: dict[str, list[Orphan]] = {}
    for orphan, name in plan:
        lanes.setdefault(name, []).append(orphan)
    return lanes
