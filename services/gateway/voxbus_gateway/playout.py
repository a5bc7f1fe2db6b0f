"""Paced, ordered, pausable playout of one agent turn, and what the caller heard of it.

TTS replicas may finish clauses out of order; chunks are reordered by (clause, chunk) into
one timeline of 20 ms frames. A pacer sends frames from a cursor in real time with a small
lead. Pausing (a possible barge-in) rewinds the cursor to what the caller has actually heard
(sent minus the lead the device still buffers), so resuming after a false interruption
replays nothing twice and skips nothing, and an interruption records only heard words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus_common.audio import frame_bytes

log = logging.getLogger(__name__)

FRAME_MS = 20


@dataclass
class Clause:
    text: str = ""
    first_frame: int = 0  # index in the timeline
    frames: int = 0
    complete: bool = False
    interruptible: bool = True


@dataclass
class Timeline:
    frames: list[bytes] = field(default_factory=list)
    clauses: list[Clause] = field(default_factory=list)


class TurnPlayer:
    """Plays one turn's clauses in order. `pause()`/`resume()` around a possible barge-in."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        sample_rate: int,
        lead_ms: int = 60,
        stall_timeout_s: float = 20.0,
        on_mark_point: Callable[[int], Awaitable[None]] | None = None,
        mark_every_frames: int = 10,
    ) -> None:
        self._send = send
        self._frame = frame_bytes(sample_rate)
        self._lead_frames = max(0, lead_ms // FRAME_MS)
        self._stall_timeout_s = stall_timeout_s
        # With marks (Twilio-style), the carrier's echoes are the playout clock.
        self._on_mark_point = on_mark_point
        self._mark_every = max(1, mark_every_frames)
        self._marked: tuple[int, float] | None = None
        self._clause_ends: set[int] = set()
        self._pending: dict[tuple[int, int], AudioChunk] = {}
        self._next = (0, 0)  # next (clause, chunk) to move into the timeline
        self._clause_count: int | None = None
        self.timeline = Timeline()
        self.cursor = 0  # next frame to send
        self._wake = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()
        self._progress = asyncio.Event()  # a frame went out, or the turn ended
        self.done = False
        self._next_due: float | None = None
        self.first_frame_ns = 0
        self.frames_sent = 0
        self.stalled = False
        self.paused = False

    # -- input ------------------------------------------------------------------------------

    def add(self, chunk: AudioChunk) -> None:
        key = (chunk.clause_index, chunk.chunk_index)
        if key < self._next:  # placed already: a clause redelivered to a second TTS replica
            return
        self._pending[key] = chunk
        while self._next in self._pending:
            self._append(self._pending.pop(self._next))
        self._wake.set()

    def _append(self, chunk: AudioChunk) -> None:
        clause_index, chunk_index = self._next
        if chunk_index == 0:
            self.timeline.clauses.append(Clause(first_frame=len(self.timeline.frames),
                                                interruptible=not chunk.uninterruptible))
        clause = self.timeline.clauses[clause_index]
        if chunk.text:
            clause.text = chunk.text
        pcm = chunk.pcm
        for start in range(0, len(pcm), self._frame):
            frame = pcm[start : start + self._frame]
            self.timeline.frames.append(frame + b"\x00" * (self._frame - len(frame)))
            clause.frames += 1
        if chunk.last:
            clause.complete = True
            self._clause_ends.add(clause.first_frame + clause.frames)
            self._next = (clause_index + 1, 0)
        else:
            self._next = (clause_index, chunk_index + 1)

    def set_clause_count(self, count: int) -> None:
        self._clause_count = count
        self._wake.set()

    @property
    def finished_input(self) -> bool:
        return self._clause_count is not None and self._next[0] >= self._clause_count

    # -- control ----------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop sending and rewind to what the caller has heard (the lead was dropped)."""
        if self.paused:
            return
        heard = self.heard_frames()
        self.paused = True
        self._running.clear()
        self.cursor = max(0, min(self.cursor, heard))
        self._next_due = None

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._running.set()

    # -- what was heard ---------------------------------------------------------------------

    def mark_played(self, frame_index: int) -> None:
        """The carrier played everything before `frame_index` (a mark echo)."""
        if self._marked is None or frame_index > self._marked[0]:
            self._marked = (frame_index, time.monotonic())

    def heard_frames(self) -> int:
        """Frames the caller has heard: from mark echoes when the edge has them, else the
        frames sent minus what the device may still buffer."""
        if self.paused:
            return self.cursor
        if self._on_mark_point is not None:
            if self._marked is None:
                return 0
            index, at = self._marked
            return min(self.cursor, index + int((time.monotonic() - at) * 1000 / FRAME_MS))
        lead = self._lead_frames
        if self._next_due is not None:  # frames sent ahead of the clock are not heard yet
            ahead = (self._next_due - time.monotonic()) * 1000 / FRAME_MS
            lead = max(0, min(lead, round(ahead)))
        return max(0, self.cursor - lead)

    def heard_text(self, heard_frames: int | None = None) -> str:
        """Whole clauses heard, plus the words of a cut clause in proportion to its audio."""
        heard = self.heard_frames() if heard_frames is None else heard_frames
        words: list[str] = []
        for clause in self.timeline.clauses:
            if not clause.frames or heard >= clause.first_frame + clause.frames:
                words += clause.text.split()
                continue
            played = max(0, heard - clause.first_frame)
            words += _words_in_prefix(clause.text, played / clause.frames)
            break
        return " ".join(words)

    def recent_sent(self, frames: int) -> bytes:
        """The last `frames` frames sent (the reference for echo checks)."""
        return b"".join(self.timeline.frames[max(0, self.cursor - frames) : self.cursor])

    def interruptible_now(self) -> bool:
        """The clause being played may be interrupted (most are; a filler may not be)."""
        playing = max(0, self.cursor - 1)
        for clause in self.timeline.clauses:
            if clause.first_frame <= playing < clause.first_frame + clause.frames:
                return clause.interruptible
        return True

    async def interruptible_reached(self) -> None:
        """Wait until the audio being played may be interrupted, or the turn is over."""
        while not self.done and not self.interruptible_now():
            self._progress.clear()
            await self._progress.wait()

    def full_text(self) -> str:
        return " ".join(c.text for c in self.timeline.clauses if c.text)

    # -- the pacer --------------------------------------------------------------------------

    async def play(self) -> None:
        """Run until every clause is played (or the turn stalls); cancel to stop for good."""
        try:
            await self._play()
        finally:
            self.done = True
            self._progress.set()

    async def _play(self) -> None:
        while True:
            await self._running.wait()
            if self.cursor < len(self.timeline.frames):
                await self._send_frame()
                continue
            if self.finished_input:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._stall_timeout_s)
            except TimeoutError:
                if self.paused:
                    continue
                self.stalled = True
                log.error("playout stalled waiting for clause %d", self._next[0])
                return

    async def _send_frame(self) -> None:
        now = time.monotonic()
        if self._next_due is None or self._next_due < now:
            self._next_due = now  # first frame, an underrun or a resume: restart the clock
        delay = self._next_due - self._lead_frames * FRAME_MS / 1000 - now
        if delay > 0:
            await asyncio.sleep(delay)
            if not self._running.is_set():
                return
        index = self.cursor
        await self._send(self.timeline.frames[index])
        if not self._running.is_set():
            return  # paused while sending: pause() already placed the cursor
        self.cursor = index + 1
        self.frames_sent += 1
        self._progress.set()
        self._next_due = (self._next_due or time.monotonic()) + FRAME_MS / 1000
        if not self.first_frame_ns:
            self.first_frame_ns = time.time_ns()
        if self._on_mark_point is not None and (
                self.cursor % self._mark_every == 0 or self.cursor in self._clause_ends):
            await self._on_mark_point(self.cursor)


def _words_in_prefix(text: str, fraction: float) -> list[str]:
    """Words wholly inside the first `fraction` of the text, by character position (an
    estimate of word timing where the TTS gives no alignments)."""
    limit = len(text) * fraction
    out: list[str] = []
    pos = 0
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        if pos <= limit:
            out.append(word)
        else:
            break
    return out
