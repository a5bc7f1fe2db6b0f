"""Turns a stream of caller audio into utterances: VAD with pre-roll, minimum speech and hangover.

Pure and synchronous so it can be unit-tested frame by frame; the call session drives it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voxbus_common.providers import VoiceActivityDetector


@dataclass(frozen=True)
class SpeechOnset:
    """The first voiced windows of what may become an utterance (the barge-in trigger)."""

    utterance_id: int  # the id the utterance will have if it is confirmed
    onset_ms: int


@dataclass(frozen=True)
class SpeechStarted:
    utterance_id: int
    start_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    utterance_id: int
    start_ms: int
    end_ms: int  # audio time where speech stopped (before the hangover)
    pcm: bytes


EndpointEvent = SpeechOnset | SpeechStarted | SpeechEnded


@dataclass
class EndpointerConfig:
    threshold: float = 0.5
    onset_ms: int = 64
    min_speech_ms: int = 160
    hangover_ms: int = 320
    pre_roll_ms: int = 200
    max_utterance_ms: int = 28000  # whisper's window is 30 s


class Endpointer:
    """Stateful VAD segmentation of one call's audio (PCM16 at the detector's rate)."""

    def __init__(self, vad: VoiceActivityDetector, config: EndpointerConfig) -> None:
        self.vad = vad
        self.cfg = config
        self._win_bytes = vad.frame_samples * 2
        self._win_ms = vad.frame_samples * 1000 // vad.sample_rate
        self._pending = bytearray()
        self._offset_ms = 0  # audio time at the start of the next window
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, config.pre_roll_ms // self._win_ms))
        self._candidate: list[bytes] = []
        self._speech: bytearray | None = None
        self._speech_start_ms = 0
        self._silence_ms = 0
        self._utterance_id = 0
        self._last_voiced_end_ms = 0

    @property
    def in_speech(self) -> bool:
        return self._speech is not None

    @property
    def utterance_id(self) -> int:
        return self._utterance_id

    @property
    def silence_ms(self) -> int:
        return self._silence_ms

    @property
    def last_voiced_end_ms(self) -> int:
        return self._last_voiced_end_ms

    def current_audio(self) -> bytes:
        """Audio of the utterance in progress (for partial transcripts)."""
        return bytes(self._speech) if self._speech is not None else b""

    def resume(self, offset_ms: int, after_utterance: int) -> None:
        """Carry on a stream that started elsewhere: audio time and utterance ids continue."""
        self._offset_ms = offset_ms
        self._last_voiced_end_ms = offset_ms
        self._utterance_id = after_utterance

    def push(self, pcm: bytes) -> list[EndpointEvent]:
        self._pending += pcm
        events: list[EndpointEvent] = []
        while len(self._pending) >= self._win_bytes:
            window = bytes(self._pending[: self._win_bytes])
            del self._pending[: self._win_bytes]
            event = self._window(window)
            if event is not None:
                events.append(event)
            self._offset_ms += self._win_ms
        return events

    def flush(self) -> SpeechEnded | None:
        """End of stream: close an utterance in progress."""
        if self._speech is None:
            return None
        return self._close(self._offset_ms)

    def _window(self, window: bytes) -> EndpointEvent | None:
        p = self.vad.speech_probability(window)
        voiced = p >= self.cfg.threshold
        unvoiced = p < max(0.0, self.cfg.threshold - 0.15)
        start_of_window = self._offset_ms
        if self._speech is None:
            if voiced:
                self._candidate.append(window)
                voiced_ms = len(self._candidate) * self._win_ms
                if voiced_ms >= self.cfg.min_speech_ms:
                    self._utterance_id += 1
                    pre = b"".join(self._pre_roll)
                    self._speech_start_ms = (
                        start_of_window + self._win_ms
                        - len(self._candidate) * self._win_ms
                    )
                    self._speech = bytearray(pre + b"".join(self._candidate))
                    self._candidate.clear()
                    self._pre_roll.clear()
                    self._silence_ms = 0
                    self._last_voiced_end_ms = start_of_window + self._win_ms
                    return SpeechStarted(self._utterance_id, self._speech_start_ms)
                if voiced_ms - self._win_ms < self.cfg.onset_ms <= voiced_ms:
                    return SpeechOnset(self._utterance_id + 1,
                                       start_of_window + self._win_ms - voiced_ms)
            elif unvoiced or not self._candidate:
                self._pre_roll.extend(self._candidate)
                self._candidate.clear()
                self._pre_roll.append(window)
            else:
                self._candidate.append(window)
            return None

        self._speech += window
        if unvoiced:
            self._silence_ms += self._win_ms
            if self._silence_ms >= self.cfg.hangover_ms:
                return self._close(self._last_voiced_end_ms)
        else:
            self._silence_ms = 0
            self._last_voiced_end_ms = start_of_window + self._win_ms
        if start_of_window + self._win_ms - self._speech_start_ms >= self.cfg.max_utterance_ms:
            return self._close(start_of_window + self._win_ms)
        return None

    def _close(self, end_ms: int) -> SpeechEnded:
        assert self._speech is not None
        event = SpeechEnded(self._utterance_id, self._speech_start_ms, end_ms, bytes(self._speech))
        self._speech = None
        self._silence_ms = 0
        return event
