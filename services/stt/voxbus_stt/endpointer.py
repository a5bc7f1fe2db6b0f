"""Turns a stream of caller audio into turns: VAD with pre-roll and minimum speech, and an
end-of-turn policy for the pauses.

- `vad`: a pause of `hangover_ms` ends the turn (what VAD-only stacks do; it answers inside
  a phone number dictated in groups).
- `model`: at `ask_after_ms` of silence the endpointer asks for a verdict (`TurnCheck`; the
  session runs the end-of-turn model and answers with `verdict`). Complete ends the turn
  once the silence has lasted `min_silence_ms` (at once if it has: LiveKit's minimum
  endpointing delay; the short breaths inside a sentence are shorter, and the answer is
  being prepared meanwhile on the speculative transcript); incomplete holds it until speech
  resumes or `max_hold_ms` of silence (the fallback, also for a caller who goes silent
  mid-number). A verdict that cannot be had (a model error) falls back to the VAD hangover
  for that pause.

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
    reason: str = "vad"  # vad | model | words | max_hold | max_length | stream_end
    probability: float = -1.0  # the end-of-turn model's verdict (-1: not asked)


@dataclass(frozen=True)
class TurnCheck:
    """A pause long enough to ask the end-of-turn model about; answer with `verdict(key)`."""

    utterance_id: int
    key: tuple[int, int]  # (utterance, end of the last voiced window): this very pause
    pcm: bytes  # the turn's audio so far, the pause included


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back after a pause the turn was being judged in (the caller went on)."""

    utterance_id: int
    offset_ms: int
    paused_ms: int


EndpointEvent = SpeechOnset | SpeechStarted | SpeechEnded | TurnCheck | SpeechResumed
POLICIES = ("vad", "model")


@dataclass
class EndpointerConfig:
    threshold: float = 0.5
    onset_ms: int = 64
    min_speech_ms: int = 160
    hangover_ms: int = 320
    pre_roll_ms: int = 200
    max_utterance_ms: int = 28000  # whisper's window is 30 s
    policy: str = "vad"  # vad | model (module docstring)
    ask_after_ms: int = 160  # model: silence before the end-of-turn model is asked
    max_hold_ms: int = 2000  # model: the longest hold, for words that cannot end a turn
    hold_ms: int = 1200  # model: the hold when the audio model or a dictation says "not yet"
    completion_threshold: float = 0.5  # model: at or above, the turn is complete
    min_silence_ms: int = 0  # model: a complete turn ends after this much silence, not before
    resume_after_ms: int = 96  # a pause this long is announced as over when speech returns


class SilentVad:
    """What a session's endpointer holds once its detector went back to the pool."""

    def __init__(self, sample_rate: int, frame_samples: int) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples

    def speech_probability(self, frame: bytes) -> float:
        return 0.0

    def reset(self) -> None:
        return None


class Endpointer:
    """Stateful VAD segmentation of one call's audio (PCM16 at the detector's rate)."""

    def __init__(self, vad: VoiceActivityDetector, config: EndpointerConfig) -> None:
        self.vad: VoiceActivityDetector = vad
        self.cfg = config
        self._win_bytes = vad.frame_samples * 2
        self._win_ms = vad.frame_samples * 1000 // vad.sample_rate
        self._pending = bytearray()
        self._offset_ms = 0  # audio time at the start of the next window
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, config.pre_roll_ms // self._win_ms))
        self._candidate: list[bytes] = []
        self._speech: bytearray | None = None
        self._speech_start_ms = 0
        self._speech_origin_ms = 0
        self._silence_ms = 0
        self._utterance_id = 0
        self._last_voiced_end_ms = 0
        self._pause_limit_ms = self._initial_limit()
        self._asked = False  # this pause's TurnCheck went out
        self._probability = -1.0
        self._complete = ""  # this pause was judged complete ("model" | "words"): the reason

    def _initial_limit(self) -> int:
        return self.cfg.max_hold_ms if self.cfg.policy == "model" else self.cfg.hangover_ms

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

    def audio_since(self, n_bytes: int) -> bytes:
        """The utterance's audio after its first `n_bytes` (what a recognition stream has
        not been given yet)."""
        return bytes(self._speech[n_bytes:]) if self._speech is not None else b""

    @property
    def speech_origin_ms(self) -> int:
        """Audio time of the utterance's first byte (its pre-roll included)."""
        return self._speech_origin_ms

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

    def release_vad(self) -> VoiceActivityDetector:
        """The session is over: hand its detector back (vad_pool.py). Anything still
        pushed afterwards is heard as silence, never on another call's detector state."""
        vad = self.vad
        self.vad = SilentVad(vad.sample_rate, vad.frame_samples)
        return vad

    def flush(self) -> SpeechEnded | None:
        """End of stream: close an utterance in progress."""
        if self._speech is None:
            return None
        return self._close(self._offset_ms, "stream_end")

    def verdict(self, key: tuple[int, int], probability: float | None,
                cue: str | None = None) -> SpeechEnded | None:
        """The end-of-turn model's answer for the pause `key` (None: it could not judge),
        with the cue in the words so far (turn_cues.py: "incomplete" holds the turn,
        "complete" ends it, whatever the audio says). Complete closes the turn now; a stale
        answer (speech came back) changes nothing."""
        if self._speech is None or key != (self._utterance_id, self._last_voiced_end_ms):
            return None
        if self._silence_ms == 0:
            return None
        self._probability = probability if probability is not None else -1.0
        if cue in ("incomplete", "dictating"):
            self._pause_limit_ms = (self.cfg.max_hold_ms if cue == "incomplete"
                                    else self.cfg.hold_ms)
            return self._held()
        if cue == "complete":
            return self._complete_after_silence("words")
        if probability is None:
            self._pause_limit_ms = self.cfg.hangover_ms  # no model: VAD rules this pause
            if self._silence_ms >= self._pause_limit_ms:
                return self._close(self._last_voiced_end_ms, "vad")
            return None
        if probability >= self.cfg.completion_threshold:
            return self._complete_after_silence("model")
        self._pause_limit_ms = self.cfg.hold_ms
        return self._held()

    def _complete_after_silence(self, reason: str) -> SpeechEnded | None:
        if self._silence_ms >= self.cfg.min_silence_ms:
            return self._close(self._last_voiced_end_ms, reason)
        self._complete, self._pause_limit_ms = reason, self.cfg.min_silence_ms
        return None

    def _held(self) -> SpeechEnded | None:
        """Held: unless the silence already outlasted the hold (a slow verdict)."""
        if self._silence_ms >= self._pause_limit_ms:
            return self._close(self._last_voiced_end_ms, "max_hold")
        return None

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
                    pre_ms = len(pre) * 500 // self.vad.sample_rate
                    self._speech_origin_ms = self._speech_start_ms - pre_ms
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
            if self._silence_ms >= self._pause_limit_ms:
                held = self.cfg.policy == "model" and self._pause_limit_ms != self.cfg.hangover_ms
                reason = self._complete or ("max_hold" if held else "vad")
                return self._close(self._last_voiced_end_ms, reason)
            if (self.cfg.policy == "model" and not self._asked
                    and self._silence_ms >= self.cfg.ask_after_ms):
                self._asked = True
                return TurnCheck(self._utterance_id,
                                 (self._utterance_id, self._last_voiced_end_ms),
                                 bytes(self._speech))
        else:
            resumed = self._pause_over(start_of_window)
            self._last_voiced_end_ms = start_of_window + self._win_ms
            if resumed is not None:
                return resumed
        if start_of_window + self._win_ms - self._speech_start_ms >= self.cfg.max_utterance_ms:
            return self._close(start_of_window + self._win_ms, "max_length")
        return None

    def _pause_over(self, start_of_window: int) -> SpeechResumed | None:
        """Speech again: the pause (if it was one worth announcing) is over."""
        paused = self._silence_ms
        self._silence_ms = 0
        self._asked = False
        self._probability = -1.0
        self._complete = ""
        self._pause_limit_ms = self._initial_limit()
        if paused >= self.cfg.resume_after_ms:
            return SpeechResumed(self._utterance_id, start_of_window, paused)
        return None

    def _close(self, end_ms: int, reason: str) -> SpeechEnded:
        assert self._speech is not None
        event = SpeechEnded(self._utterance_id, self._speech_start_ms, end_ms, bytes(self._speech),
                            reason, self._probability)
        self._speech = None
        self._silence_ms = 0
        self._asked = False
        self._probability = -1.0
        self._complete = ""
        self._pause_limit_ms = self._initial_limit()
        return event
