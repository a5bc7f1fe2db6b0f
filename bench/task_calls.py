"""A multi-turn scripted caller over the Twilio edge for the task suite (bench/tasks.py):
it says each of its turns (Piper speech, μ-law 8 kHz, real time), waits until the agent's
answer has played out, and records per turn what the gateway reported on the call's watch
subject (final transcript, routed answer, tools, the agent's text, latency breakdown) and
what the caller met (voice-to-voice from its last voiced frame to the first agent audio).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nats
from nats.aio.msg import Msg

from bench.turn_calls import Line, first_voiced_frame, quiet_for, twilio_line, until
from voxbus_cli.speech_end import last_speech_frame
from voxbus_cli.twilio_phone import TwilioPhone
from voxbus_common import subjects

ANSWER_TIMEOUT_S = 45.0  # a turn with two tool rounds on a slow machine
QUIET_AFTER_S = 1.5  # the agent's answer is over when its audio has paused this long


@dataclass
class TurnRecord:
    said: str
    heard_as: str = ""  # the final transcript
    agent_text: str = ""
    tools: list[str] = field(default_factory=list)
    routed: str = ""
    voice_to_voice_ms: float | None = None  # caller side
    latency_ms: dict[str, Any] = field(default_factory=dict)  # the gateway's breakdown
    llm_first_token_ms: float | None = None  # the LLM service's own
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CallRecord:
    turns: list[TurnRecord] = field(default_factory=list)
    transfer_target: str = ""
    ended_by_agent: bool = False
    error: str = ""


async def converse(twilio_url: str, nats_url: str, call_sid: str,
                   turns: list[tuple[str, bytes]], nats_options: dict[str, Any] | None = None,
                   done: Callable[[CallRecord], bool] | None = None) -> CallRecord:
    """Say `turns` ((text, pcm16 16 kHz) each) one after another, each once the agent's
    previous answer has played out; the call ends after the last answer, when the agent
    ends it, or once `done` says the caller got what it wanted."""
    record = CallRecord()
    events: list[dict[str, Any]] = []
    nc = await nats.connect(nats_url, **(nats_options or {}))

    async def on_event(msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            event = json.loads(msg.data)
            event["at"] = time.monotonic()
            events.append(event)

    sub = await nc.subscribe(subjects.watch(call_sid), cb=on_event)
    try:
        async with twilio_line(twilio_url, call_sid) as (phone, line, ws):
            try:
                await _talk(phone, line, turns, record, events, ws, done)
            except TimeoutError:
                record.error = "timed out"
        await until(lambda: any(e.get("type") == "call_ended" for e in events), 5.0)
    finally:
        await sub.unsubscribe()
        await nc.close()
    _attribute(record, events)
    return record


async def _talk(phone: TwilioPhone, line: Line, turns: list[tuple[str, bytes]],
                record: CallRecord, events: list[dict[str, Any]],
                ws: aiohttp.ClientWebSocketResponse,
                done: Callable[[CallRecord], bool] | None) -> None:
    start = time.monotonic()
    if not await until(lambda: phone.media_frames > 0, 20.0):
        record.error = "no greeting"
        return
    await until(lambda: quiet_for(phone, QUIET_AFTER_S, start), 30.0)
    for n, (text, pcm) in enumerate(turns):
        if ws.closed or _ended(events):
            record.error = record.error or f"the call ended before turn {n + 1}"
            return
        turn = TurnRecord(said=text)
        record.turns.append(turn)
        line.say(pcm, f"t{n}", first_mark=first_voiced_frame(pcm),
                 last_mark=max(0, last_speech_frame(pcm)))
        await line.idle.wait()
        spoke = line.marks.get(f"t{n}:end", time.monotonic())
        first = await _answer(phone, ws, events, spoke)
        if first is None:
            record.error = f"no answer to turn {n + 1}"
            return
        turn.voice_to_voice_ms = round((first - spoke) * 1000)
        turn.events = [e for e in events if spoke - 10 < e["at"]]
        if done is not None:
            _attribute(record, events)
            if done(record):
                return


async def _answer(phone: TwilioPhone, ws: aiohttp.ClientWebSocketResponse,
                  events: list[dict[str, Any]], spoke: float) -> float | None:
    """When the answer's first audio arrived (None: it never did); returns once it has
    played out (or the call ended)."""
    if not await until(lambda: any(t > spoke for t in phone.media_times), ANSWER_TIMEOUT_S):
        return None
    first = next(t for t in phone.media_times if t > spoke)
    await until(lambda: quiet_for(phone, QUIET_AFTER_S, spoke) or ws.closed or _ended(events),
                ANSWER_TIMEOUT_S)
    return first


def _ended(events: list[dict[str, Any]]) -> bool:
    return any(e.get("type") in ("call_ended", "transfer") for e in events)


def _attribute(record: CallRecord, events: list[dict[str, Any]]) -> None:
    """Give each caller turn the gateway's turn it caused, in order of the gateway's turns
    (a turn id is shared by the transcript, tools, routed and turn events)."""
    by_turn: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for e in events:
        kind, tid = e.get("type"), e.get("turn")
        if kind == "transfer":
            record.transfer_target = str(e.get("target", ""))
        reason = str(e.get("reason", ""))
        if kind == "call_ended" and ("agent" in reason or reason.startswith("route ")):
            record.ended_by_agent = True
        if not isinstance(tid, int):
            continue
        if tid not in by_turn:
            by_turn[tid] = {"tools": [], "routed": "", "turn": None}
            order.append(tid)
        slot = by_turn[tid]
        if kind == "tools":
            slot["tools"] += list(e.get("tools", []))
        elif kind == "routed":
            slot["routed"] = e.get("route", "")
        elif kind == "turn":
            slot["turn"] = e
    finished = [t for t in order if by_turn[t]["turn"] is not None
                and by_turn[t]["turn"].get("user_text")]
    for turn, tid in zip(record.turns, finished, strict=False):
        slot = by_turn[tid]
        summary = slot["turn"]
        turn.heard_as = summary.get("user_text", "")
        turn.agent_text = summary.get("agent_text", "")
        turn.latency_ms = summary.get("latency_ms", {})
        turn.llm_first_token_ms = summary.get("llm_first_token_ms")
        turn.tools = slot["tools"]
        turn.routed = slot["routed"]
