"""Maps caller-audio time (ms since the call started) to the wall clock at the gateway.

The gateway stamps each frame (20 ms unless VOXBUS_BUS_FRAME_MS says more) when it publishes
it, so "end of caller speech" is the wall time at which the last voiced frame reached the
platform: latency measured from there is what the caller experiences (the VAD hangover
included).
"""

from __future__ import annotations

import time
from collections import deque

from voxbus_common.audio import FRAME_MS


class AudioClock:
    def __init__(self, horizon_frames: int = 3000, frame_ms: int = FRAME_MS) -> None:
        self.frame_ms = frame_ms
        self._walls: deque[int] = deque(maxlen=horizon_frames)
        self._first_index = 0
        self.offset_ms = 0

    def stamp_frame(self) -> int:
        """Record that the next frame goes out now; returns its audio offset in ms."""
        if len(self._walls) == self._walls.maxlen:
            self._first_index += 1
        self._walls.append(time.time_ns())
        offset = self.offset_ms
        self.offset_ms += self.frame_ms
        return offset

    def wall_at(self, offset_ms: int) -> int:
        """Wall clock (unix ns) when audio at offset_ms was published (clamped to the horizon)."""
        if not self._walls:
            return time.time_ns()
        index = offset_ms // self.frame_ms - self._first_index
        index = min(max(index, 0), len(self._walls) - 1)
        return self._walls[index]
