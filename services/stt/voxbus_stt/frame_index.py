"""Where in the audio stream each caller frame a session read sits: what a checkpoint needs.

A replacement worker resumes from a stream sequence, and the session knows the audio time it
wants to resume at (an unfinished utterance's start, pre-roll included). Frames that came
straight off the subject (direct_audio.py) have no stream sequence, so the index has gaps;
offsets only grow, so the frame for a time is found by bisection, not by counting frames.
"""

from __future__ import annotations

import bisect
from collections import deque
from operator import itemgetter

from voxbus_common.audio import FRAME_MS

KEPT = 1600  # frames (32 s at 20 ms): longer than any utterance a checkpoint waits on


class FrameIndex:
    def __init__(self, sample_rate: int, kept: int = KEPT) -> None:
        self.sample_rate = sample_rate
        self._frames: deque[tuple[int, int]] = deque(maxlen=kept)  # (offset ms, stream seq)
        self.frame_ms = FRAME_MS  # the last frame's length (VOXBUS_BUS_FRAME_MS: 20-60 ms)

    def __bool__(self) -> bool:
        return bool(self._frames)

    def add(self, offset_ms: int, stream_seq: int, pcm_bytes: int) -> None:
        self._frames.append((offset_ms, stream_seq))
        self.frame_ms = pcm_bytes * 500 // self.sample_rate  # (PCM16: 2 bytes a sample)

    def clear(self) -> None:
        self._frames.clear()

    @property
    def last(self) -> tuple[int, int]:
        """(offset ms, stream seq) of the newest frame; (0, 0) when there is none."""
        return self._frames[-1] if self._frames else (0, 0)

    @property
    def end_ms(self) -> int:
        """Audio time just after the newest frame."""
        return self.last[0] + self.frame_ms

    def seq_at(self, offset_ms: int) -> int:
        """The stream sequence of the first frame at or after `offset_ms` (the newest
        frame's when all are older; the oldest kept when all are newer)."""
        index = bisect.bisect_left(self._frames, offset_ms, key=itemgetter(0))
        return self._frames[min(index, len(self._frames) - 1)][1] if self._frames else 0
