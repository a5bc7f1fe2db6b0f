"""One agent turn and its latency marks."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from voxbus.v1.call_pb2 import CallEvent, TurnTimings
from voxbus_common.metrics import TURN_STAGE, TURNS, VOICE_TO_VOICE
from voxbus_gateway.playout import TurnPlayer


def latency_breakdown(t: TurnTimings) -> dict[str, float | None]:
    """Milliseconds between the stages of a turn (None where a stage was not reached)."""

    def ms(a: int, b: int) -> float | None:
        return round((b - a) / 1e6, 1) if a and b else None

    return {
        "end_of_speech_to_final_transcript": ms(t.speech_end, t.final_transcript),
        "final_transcript_to_first_token": ms(t.final_transcript, t.first_token),
        "first_token_to_first_audio_chunk": ms(t.first_token, t.first_audio_chunk),
        "first_audio_chunk_to_first_audio_played": ms(t.first_audio_chunk, t.first_audio_played),
        "voice_to_voice": ms(t.speech_end, t.first_audio_played),
    }


def record_turn_metrics(summary: dict[str, Any], stalled: bool) -> None:
    """Turn outcome and, for turns that played, the latency of each stage."""
    outcome = "stalled" if stalled else "interrupted" if summary["interrupted"] else "completed"
    TURNS.labels(outcome).inc()
    for stage, ms in summary["latency_ms"].items():
        if ms is None or ms < 0:
            continue
        if stage == "voice_to_voice":
            VOICE_TO_VOICE.observe(ms / 1000)
        else:
            TURN_STAGE.labels(stage).observe(ms / 1000)


@dataclass
class Turn:
    turn_id: int
    user_text: str
    player: TurnPlayer
    timings: TurnTimings = field(default_factory=TurnTimings)
    agent_text: str = ""
    preemptive: bool = False  # opened on a stable partial; plays only once the final agrees
    task: asyncio.Task[None] | None = None
    span: Span | None = None
    llm_first_token_ms: float = 0.0  # the LLM service's own time to first token
    hangup_after: str = ""  # hang up with this reason once the turn has played (end_call)
    transfer_to: str = ""  # transfer the caller here once the turn has played
    interruptible: bool = True  # false: the caller hears it out (allow_interruptions)

    def take_action(self, action: str, target: str,
                    reason: str = "the agent ended the call") -> None:
        """A tool's or route's action (end_call, transfer_call): carried out after the reply
        played; a turn the caller interrupts never gets there (they were not done)."""
        if action == "end_call":
            self.hangup_after = reason
        elif action == "transfer_call" and target:
            self.transfer_to = target

    def end_span(self, summary: dict[str, Any] | None) -> None:
        """Close the turn's span with its outcome (`None`: a dropped preemptive turn)."""
        if self.span is None:
            return
        if summary is None:
            self.span.set_attribute("voxbus.preemptive_dropped", True)
        else:
            self.span.set_attribute("voxbus.interrupted", summary["interrupted"])
            v2v = summary["latency_ms"].get("voice_to_voice")
            if v2v is not None:
                self.span.set_attribute("voxbus.voice_to_voice_ms", v2v)
        self.span.end()
        self.span = None

    def agent_record(self, interrupted: bool, heard_all: bool = False) -> CallEvent.AgentTurn:
        """What the agent said and what the caller heard of it (for memory and analytics)."""
        frames = len(self.player.timeline.frames) if heard_all else None
        return CallEvent.AgentTurn(heard_text=self.player.heard_text(frames),
                                   full_text=self.agent_text or self.player.full_text(),
                                   interrupted=interrupted, timings=self.timings)

    def summary(self, agent: CallEvent.AgentTurn) -> dict[str, Any]:
        """The `turn` event for the caller's UI or script."""
        return {"type": "turn", "turn": self.turn_id, "user_text": self.user_text,
                "agent_text": agent.full_text, "heard_text": agent.heard_text,
                "interrupted": agent.interrupted, "audio_ms": self.player.frames_sent * 20,
                "latency_ms": latency_breakdown(self.timings),
                "llm_first_token_ms": round(self.llm_first_token_ms, 1) or None}


def normalized(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


class Backchannels:
    """Short acknowledgements ("mhm", "okay", "yeah") that must not interrupt the agent."""

    def __init__(self, phrases: str, max_words: int = 3) -> None:
        self.phrases = {normalized(p) for p in phrases.split(",") if p.strip()}
        self.words = {w for p in self.phrases for w in p.split()}
        self.max_words = max_words

    def matches(self, text: str) -> bool:
        words = normalized(text).split()
        if not words:
            return True  # noise: no words at all
        return len(words) <= self.max_words and all(w in self.words for w in words)
