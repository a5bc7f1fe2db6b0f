"""The soak benchmark's callers: `voxbus load`'s synthetic callers (libs/cli/voxbus_cli/load.py)
that also timestamp what the gateway tells them, so a long run can be cut into minutes and
every caller utterance followed to its end: a final transcript (or a skip), then an agent turn.

The load generator keeps only finished turns, without times; the soak needs when each turn
ended (per-minute p99) and which utterances never got an answer (lost turns after a kill).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voxbus_cli.load import LoadConfig, LoadStats, SyntheticCaller, run_load
from voxbus_common.audio import FRAME_MS

PRE_ROLL_SLACK_MS = 500  # a speech start is stamped at most this far before its voice


@dataclass
class Utterance:
    """One caller utterance, from the VAD's speech start to the agent turn that answered it."""

    call: int
    uid: int
    start_t: float  # monotonic receipt time of the event, as are all the *_t below
    audio_ms: int | None = None  # where in the caller's audio the speech began (gateway clock)
    end_t: float | None = None
    final_t: float | None = None
    turn: int | None = None
    skipped: str = ""  # the gateway's reason when it decided not to answer (echo, noise)
    done_t: float | None = None
    overhead_ms: float | None = None
    interrupted: bool = False

    @property
    def outcome(self) -> str:
        """answered | skipped | no_transcript (lost) | no_turn (lost)."""
        if self.skipped:
            return "skipped"
        if self.final_t is None:
            return "no_transcript"
        if self.turn is not None and self.done_t is None:
            return "no_turn"
        return "answered"

    @property
    def lost(self) -> bool:
        return self.outcome in ("no_transcript", "no_turn")

    def to_json(self, t0: float) -> dict[str, Any]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t0, 2)

        return {"call": self.call, "utterance": self.uid, "outcome": self.outcome,
                "speech_start_s": rel(self.start_t), "speech_end_s": rel(self.end_t),
                "final_s": rel(self.final_t), "turn": self.turn, "turn_s": rel(self.done_t)}


@dataclass
class TurnLog:
    """Every utterance, every finished turn (time, overhead) and every error, timestamped."""

    hangover_ms: float
    utterances: dict[tuple[int, int], Utterance] = field(default_factory=dict)
    by_turn: dict[tuple[int, int], Utterance] = field(default_factory=dict)
    turns: list[tuple[float, float]] = field(default_factory=list)  # (t, overhead ms) played out
    stages: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (t, ms per stage)
    errors: list[tuple[float, int, str]] = field(default_factory=list)
    odd_turns: list[dict[str, Any]] = field(default_factory=list)  # no utterance or no timing
    clips: dict[int, list[float]] = field(default_factory=dict)  # call -> when each clip began
    clip_ids: dict[int, list[int]] = field(default_factory=dict)  # call -> which clip, in order
    clip_audio_ms: dict[int, list[int]] = field(default_factory=dict)  # call -> each clip's
    # first frame in the call's audio (FRAME_MS per frame sent, as the gateway stamps them)
    # VAD speech starts of an utterance already answered (replayed after an STT failover): the
    # client sees a speech_end no transcript or turn will follow
    phantom_vad: list[tuple[float, int]] = field(default_factory=list)
    reprompts: list[tuple[float, int]] = field(default_factory=list)  # the idle "still there?"
    barge_ins: list[tuple[float, int]] = field(default_factory=list)  # agent audio paused

    def clip_of(self, u: Utterance) -> int | None:
        """Which clip the caller was saying when the utterance began."""
        starts, ids = self.clips.get(u.call, []), self.clip_ids.get(u.call, [])
        began = [clip for t, clip in zip(starts, ids, strict=False) if t <= u.start_t]
        return began[-1] if began else None

    def silent_clips(self) -> list[tuple[int, float, float]]:
        """(call, clip start, silent until): clips the caller spoke that no VAD speech start
        followed, i.e. that the platform never heard (an STT replica that owns no live call's
        audio). A speech start belongs to the clip its audio position falls in, however late
        it came (a take-over replays the audio): heard late is slow, not lost. `silent until`:
        the next heard clip's start."""
        out = []
        for call, clips in self.clips.items():
            flags = self._heard_flags(call, clips)
            for i, (start, ok) in enumerate(zip(clips, flags, strict=True)):
                if not ok:
                    until = next((clips[j] for j in range(i + 1, len(clips)) if flags[j]),
                                 math.inf)
                    out.append((call, start, until))
        return out

    def _heard_flags(self, call: int, clips: list[float]) -> list[bool]:
        """For each clip of a call: did a VAD speech start fall in it? By audio position
        when the gateway gave one, else by the time the event arrived."""
        mine = [u for u in self.utterances.values() if u.call == call]
        offsets = self.clip_audio_ms.get(call, [])
        if len(offsets) == len(clips) and all(u.audio_ms is not None for u in mine):
            # a speech start may be stamped up to a pre-roll before its first voiced frame
            return _any_in([u.audio_ms for u in mine if u.audio_ms is not None],
                           [o - PRE_ROLL_SLACK_MS for o in offsets])
        return _any_in([u.start_t for u in mine], clips)

    def record(self, call: int, event: dict[str, Any], now: float) -> None:
        kind = event.get("type")
        if kind == "vad":
            key = (call, int(event.get("utterance", -1)))
            u = self.utterances.get(key)
            if u is None:  # (a replayed utterance after an STT failover keeps the first times)
                u = self.utterances[key] = Utterance(call, key[1], now)
            elif event.get("event") == "speech_start" and (u.final_t or u.skipped):
                self.phantom_vad.append((now, call))
            offset = event.get("audio_offset_ms")
            if event.get("event") == "speech_start" and u.audio_ms is None and isinstance(
                    offset, int):
                u.audio_ms = offset
            if event.get("event") == "speech_end" and u.end_t is None:
                u.end_t = now
        elif kind == "transcript" and event.get("final"):
            u = self.utterances.get((call, int(event.get("utterance", -1))))
            if u is not None and u.final_t is None:
                u.final_t = now
                u.turn = event.get("turn")
                if u.turn is not None:
                    self.by_turn[(call, u.turn)] = u
        elif kind == "turn_skipped":
            u = self.utterances.get((call, int(event.get("utterance", -1))))
            if u is not None:
                u.skipped = str(event.get("reason", "skipped"))
        elif kind == "turn":
            v2v = event.get("latency_ms", {}).get("voice_to_voice")
            overhead = None if v2v is None else v2v - self.hangover_ms
            if overhead is not None and not event.get("interrupted"):
                self.turns.append((now, overhead))
                self.stages.append((now, {k: float(v) for k, v in event["latency_ms"].items()
                                          if v is not None and k != "voice_to_voice"}))
            if not event.get("user_text"):
                self.reprompts.append((now, call))
            u = self.by_turn.get((call, int(event.get("turn", -1))))
            if u is not None and u.done_t is None:
                u.done_t, u.overhead_ms = now, overhead
                u.interrupted = bool(event.get("interrupted"))
            elif len(self.odd_turns) < 50 and event.get("user_text"):  # (not a re-prompt)
                self.odd_turns.append({"t": now, "call": call, "why": "no utterance" if u is None
                                       else "second turn event", "event": event})
            if u is not None and overhead is None and not event.get("interrupted") and len(
                    self.odd_turns) < 50:
                self.odd_turns.append({"t": now, "call": call, "why": "no voice-to-voice",
                                       "event": event})
        elif kind == "barge_in" and event.get("phase") == "paused":
            self.barge_ins.append((now, call))  # (the callers never talk over the agent)
        elif kind == "error":
            self.errors.append((now, call, str(event.get("message", ""))))


class TracingCaller(SyntheticCaller):
    """A synthetic caller that also hands every gateway event, timestamped, to a TurnLog."""

    def __init__(self, index: int, cfg: LoadConfig, stats: LoadStats, stop_at: float,
                 log: TurnLog) -> None:
        super().__init__(index, cfg, stats, stop_at)
        self.log = log
        self._frames_sent = 0  # the gateway stamps each frame with its audio offset

    def next_frame(self, now: float) -> bytes | None:
        if self._pos == 0:  # the first frame of a clip
            self.log.clips.setdefault(self.index, []).append(now)
            self.log.clip_ids.setdefault(self.index, []).append(self._clip)
            self.log.clip_audio_ms.setdefault(self.index, []).append(
                self._frames_sent * FRAME_MS)
        frame = super().next_frame(now)
        self._frames_sent += frame is not None
        return frame

    def on_event(self, event: dict[str, Any]) -> None:
        super().on_event(event)
        self.log.record(self.index, event, time.monotonic())


async def run_traced_load(cfg: LoadConfig, stats: LoadStats, log: TurnLog) -> LoadStats:
    """`voxbus_cli.load.run_load` with TracingCallers: the same joins, ticker and hang-ups."""
    return await run_load(cfg, stats, make_caller=lambda i, c, s, stop_at: TracingCaller(
        i, c, s, stop_at, log))


def _any_in(points: Sequence[float], starts: Sequence[float]) -> list[bool]:
    """For each span [starts[i], starts[i+1]) (the last one open): does a point fall in it?"""
    ends = [*starts[1:], math.inf]
    return [any(a <= t < b for t in points) for a, b in zip(starts, ends, strict=True)]
