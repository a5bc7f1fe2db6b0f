"""Paced, ordered playout of one agent turn.

TTS replicas may finish clauses out of order; chunks are reordered by (clause, chunk) and
sent to the caller in real time (20 ms frames, a small lead ahead of the wall clock).
The player knows which clauses were fully played: that is what the caller heard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus_common.audio import frame_bytes

log = logging.getLogger(__name__)

FRAME_S = 0.02


class TurnPlayer:
    """Plays one turn's clauses in order; call `stop()` to cut it short."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        sample_rate: int,
        lead_ms: int = 60,
        stall_timeout_s: float = 20.0,
    ) -> None:
        self._send = send
        self._frame = frame_bytes(sample_rate)
        self._lead_s = lead_ms / 1000.0
        self._stall_timeout_s = stall_timeout_s
        self._chunks: dict[tuple[int, int], AudioChunk] = {}
        self._clause_count: int | None = None
        self._wake = asyncio.Event()
        self._next_due: float | None = None
        self.clause_texts: dict[int, str] = {}
        self.played_clauses: list[int] = []
        self.first_frame_ns = 0
        self.frames_sent = 0
        self.stalled = False

    def add(self, chunk: AudioChunk) -> None:
        self._chunks[(chunk.clause_index, chunk.chunk_index)] = chunk
        if chunk.text:
            self.clause_texts[chunk.clause_index] = chunk.text
        self._wake.set()

    def set_clause_count(self, count: int) -> None:
        self._clause_count = count
        self._wake.set()

    def heard_text(self) -> str:
        return " ".join(self.clause_texts.get(i, "") for i in self.played_clauses).strip()

    async def play(self) -> None:
        """Run until every clause is played (or the turn stalls); cancel to interrupt."""
        clause, index = 0, 0
        while self._clause_count is None or clause < self._clause_count:
            chunk = self._chunks.pop((clause, index), None)
            if chunk is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._stall_timeout_s)
                except TimeoutError:
                    self.stalled = True
                    log.error("playout stalled waiting for clause %d chunk %d", clause, index)
                    return
                continue
            await self._play_pcm(chunk.pcm)
            if chunk.last:
                self.played_clauses.append(clause)
                clause, index = clause + 1, 0
            else:
                index += 1

    async def _play_pcm(self, pcm: bytes) -> None:
        for start in range(0, len(pcm), self._frame):
            frame = pcm[start : start + self._frame]
            if len(frame) < self._frame:
                frame += b"\x00" * (self._frame - len(frame))
            now = time.monotonic()
            if self._next_due is None or self._next_due < now:
                self._next_due = now  # first frame or an underrun: restart the clock
            delay = self._next_due - self._lead_s - now
            if delay > 0:
                await asyncio.sleep(delay)
            await self._send(frame)
            if not self.first_frame_ns:
                self.first_frame_ns = time.time_ns()
            self.frames_sent += 1
            self._next_due += FRAME_S
