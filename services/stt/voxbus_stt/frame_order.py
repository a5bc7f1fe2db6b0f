"""Caller frames back in the order they were spoken.

The gateway numbers a call's frames (Meta.seq) and publishes them into the audio stream.
When the stream's leader dies or is cut off (a clustered NATS), frames published until a
new leader is elected are not stored; the frames after them are. STT then sees the numbers
jump, holds the later frames, and asks the gateway for the missing ones (which it keeps for
a few seconds); they arrive after the later ones, and this puts everything back in order.
A gap the gateway cannot fill is given up after a few asks: reported, never silent.

Where a session starts is the audio stream's to say (a take-over replays from a checkpoint):
frames read straight off the subject before the stream's first one (`anchor=False`) are held,
not taken as the start, or the live frames would make the replayed ones look old and the
words spoken during the failover would be dropped as duplicates.

A pure state machine (no I/O, no clock): `CallSession` does the asking and the timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_HELD = 1500  # 30 s of 20 ms frames waiting behind a gap (the stream keeps 30 s)


@dataclass(frozen=True)
class Gap:
    """Frames `first`..`last` (inclusive) are missing."""

    first: int
    last: int

    @property
    def frames(self) -> int:
        return self.last - self.first + 1


class FrameOrder(Generic[T]):
    def __init__(self, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self.next_seq = 0  # the next frame to hand on (0: not known yet, take the first)
        self.anchored = False  # the start came from the stream (or was given up waiting)
        self._held: dict[int, T] = {}
        self.duplicates = 0

    def push(self, seq: int, item: T, *, anchor: bool = True) -> list[T]:
        """A frame arrived: the frames that can be processed now, in order. Until a frame
        with `anchor` (from the stream) has come, the others are only held."""
        if not self.anchored:
            if not anchor:
                self._held.setdefault(seq, item)
                return []
            self.anchored = True
            self.next_seq = seq
            for old in [s for s in self._held if s < seq]:  # (older than the replay's start)
                del self._held[old]
        if seq < self.next_seq or seq in self._held:
            self.duplicates += 1  # a frame asked again that had arrived after all
            return []
        if seq > self.next_seq:
            self._held[seq] = item
            if len(self._held) > self.max_held:  # never wait forever on a gap
                return self.give_up()[0]
            return []
        self.next_seq = seq + 1
        return [item, *self._release()]

    def anchor_at_held(self) -> list[T]:
        """No stream frame came: start from the oldest frame held (what came before it is
        not known to be missing). Returns the frames now in order."""
        if self.anchored or not self._held:
            return []
        self.anchored = True
        self.next_seq = min(self._held)
        return self._release()

    def gap(self) -> Gap | None:
        """What is missing before the frames held, if anything."""
        if not self._held or not self.anchored:
            return None
        return Gap(self.next_seq, min(self._held) - 1)

    def want_up_to(self, last_seq: int) -> Gap | None:
        """The caller is gone after frame `last_seq`: what is still missing up to it."""
        gap = self.gap()
        if gap is not None:
            return gap
        if self.next_seq and self.next_seq <= last_seq:
            return Gap(self.next_seq, last_seq)
        return None

    def give_up(self) -> tuple[list[T], int]:
        """Skip the current gap: (the frames now in order, how many frames were lost)."""
        gap = self.gap()
        if gap is None:
            return [], 0
        self.next_seq = gap.last + 1
        return self._release(), gap.frames

    @property
    def held(self) -> int:
        return len(self._held)

    def _release(self) -> list[T]:
        """Hand on the held frames that follow without a gap."""
        out = []
        while (item := self._held.pop(self.next_seq, None)) is not None:
            out.append(item)
            self.next_seq += 1
        return out
