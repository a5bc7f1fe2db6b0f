"""One scripted caller over the Twilio edge (bench/turns.py): a real Media Stream (μ-law
8 kHz in 20 ms media messages, marks, clear), in real time, recording what a caller meets:
when each part of its speech ended, when agent audio arrived and when the carrier was told
to clear it. The gateway's own account of the call (its watch events: finals with their
end-of-turn reason, barge-ins, turns) is recorded beside it, from NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nats
import numpy as np
from nats.aio.msg import Msg

from voxbus_cli.speech_end import last_speech_frame
from voxbus_cli.twilio_phone import TwilioPhone
from voxbus_common import subjects
from voxbus_common.audio import resample_pcm16
from voxbus_common.g711 import pcm16_to_ulaw, ulaw_to_pcm16

FRAME = 160  # μ-law bytes in 20 ms at 8 kHz
SILENCE = b"\xff" * FRAME
ECHO_GAIN = 0.5  # -6 dB: a speakerphone leaking the agent back into the microphone
ECHO_DELAY_FRAMES = 5  # 100 ms


@dataclass
class Script:
    """What the caller says: PCM16 16 kHz parts with the pause after each."""

    parts: list[bytes]
    pauses: list[float]
    over_agent: bytes = b""  # said once the agent has talked 1 s (or the greeting has)
    during_greeting: bool = False
    echo: bool = False  # the agent's audio leaks back into the caller's microphone


@dataclass
class Timeline:
    """Monotonic times (s) of what the caller did and met."""

    seg_starts: list[float] = field(default_factory=list)
    seg_ends: list[float] = field(default_factory=list)  # each part's last voiced frame sent
    over_start: float | None = None  # first voiced frame of the speech over the agent
    greeting_end: float = 0.0
    media_times: list[float] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def ulaw_frames(pcm16: bytes) -> list[bytes]:
    ulaw = pcm16_to_ulaw(resample_pcm16(pcm16, 16000, 8000))
    return [ulaw[i: i + FRAME].ljust(FRAME, b"\xff") for i in range(0, len(ulaw), FRAME)]


def first_voiced_frame(pcm16: bytes) -> int:
    """Index of the first 20 ms frame holding speech (speech_end's rule, reversed)."""
    reversed_pcm = np.frombuffer(pcm16, dtype="<i2")[::-1].tobytes()
    last = last_speech_frame(reversed_pcm)
    frames = len(pcm16) // 640
    return max(0, frames - 1 - last) if last >= 0 else 0


class Line:
    """The caller's side of the line: one 20 ms frame every 20 ms, queued speech or
    silence (plus the agent's echo when asked); marks record when a frame went out."""

    def __init__(self, phone: TwilioPhone) -> None:
        self.phone = phone
        self.queue: deque[tuple[bytes, str]] = deque()
        self.marks: dict[str, float] = {}
        self.echo = False
        self._echo_from = 0
        self.idle = asyncio.Event()

    def say(self, pcm16: bytes, name: str, first_mark: int = -1, last_mark: int = -1) -> None:
        for i, frame in enumerate(ulaw_frames(pcm16)):
            mark = (f"{name}:start" if i == first_mark else
                    f"{name}:end" if i == last_mark else "")
            self.queue.append((frame, mark))
        self.idle.clear()

    def pause(self, seconds: float) -> None:
        self.queue.extend((SILENCE, "") for _ in range(round(seconds * 50)))
        self.idle.clear()

    def _echo_frame(self, frame: bytes) -> bytes:
        played = self.phone.played
        start = len(played) - (ECHO_DELAY_FRAMES + 1) * FRAME
        if start < self._echo_from or start < 0:
            return frame
        self._echo_from = start + FRAME
        echo = np.frombuffer(ulaw_to_pcm16(bytes(played[start: start + FRAME])), dtype="<i2")
        own = np.frombuffer(ulaw_to_pcm16(frame), dtype="<i2")
        mixed = np.clip(own.astype(np.int32) + (echo * ECHO_GAIN).astype(np.int32),
                        -32768, 32767).astype("<i2")
        return pcm16_to_ulaw(mixed.tobytes())

    async def run(self) -> None:
        started, sent = time.monotonic(), 0
        while True:
            frame, mark = self.queue.popleft() if self.queue else (SILENCE, "")
            if not self.queue:
                self.idle.set()
            if self.echo:
                frame = self._echo_frame(frame)
            await self.phone.media(frame)
            if mark:
                self.marks[mark] = time.monotonic()
            sent += 1
            await asyncio.sleep(max(0.0, started + sent * 0.02 - time.monotonic()))


async def until(condition: Any, timeout_s: float, step_s: float = 0.02) -> bool:
    """Poll a condition of the real-time line (the caller's own clock, not synchronisation
    of the system under test); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


def quiet_for(phone: TwilioPhone, seconds: float, since: float) -> bool:
    """Agent audio arrived after `since` and has then been quiet for `seconds`."""
    last = phone.media_times[-1] if phone.media_times else 0.0
    return last > since and time.monotonic() - last >= seconds


@contextlib.asynccontextmanager
async def twilio_line(twilio_url: str, call_sid: str
                      ) -> AsyncIterator[tuple[TwilioPhone, Line, aiohttp.ClientWebSocketResponse]]:
    """A started Twilio Media Stream with the phone playing and the caller's line sending;
    on leaving, Twilio's `stop` is sent and the line's tasks end."""
    async with aiohttp.ClientSession() as http, http.ws_connect(twilio_url) as ws:
        phone = TwilioPhone(ws)
        tasks = [asyncio.create_task(phone.receive()), asyncio.create_task(phone.play())]
        await phone.start(call_sid)
        line = Line(phone)
        tasks.append(asyncio.create_task(line.run()))
        try:
            yield phone, line, ws
        finally:
            with contextlib.suppress(Exception):
                await phone.send({"event": "stop", "stop": {"callSid": call_sid}})
            for task in tasks:
                task.cancel()


async def place(twilio_url: str, nats_url: str, call_sid: str, script: Script,
                timeout_s: float = 60.0) -> Timeline:
    timeline = Timeline()
    nc = await nats.connect(nats_url)

    async def on_event(msg: Msg) -> None:
        _event(timeline, msg.data)

    sub = await nc.subscribe(subjects.watch(call_sid), cb=on_event)
    try:
        async with twilio_line(twilio_url, call_sid) as (phone, line, _):
            try:
                await asyncio.wait_for(_converse(phone, line, script, timeline), timeout_s)
            except TimeoutError:
                timeline.error = "timed out"
        timeline.media_times = list(phone.media_times)
        timeline.clears = list(phone.clears)
        await asyncio.sleep(0.5)  # the last watch events of the hang-up
    finally:
        await sub.unsubscribe()
        await nc.close()
    marks = line.marks
    timeline.seg_starts = [marks.get(f"part{i}:start", 0.0) for i in range(len(script.parts))]
    timeline.seg_ends = [marks.get(f"part{i}:end", 0.0) for i in range(len(script.parts))]
    timeline.over_start = marks.get("over:start")
    return timeline


def _event(timeline: Timeline, data: bytes) -> None:
    with contextlib.suppress(ValueError):
        event = json.loads(data)
        event["at"] = time.monotonic()
        timeline.events.append(event)


async def _converse(phone: TwilioPhone, line: Line, script: Script, timeline: Timeline) -> None:
    start = time.monotonic()
    if not await until(lambda: phone.media_frames > 0, 15.0):
        timeline.error = "no greeting"
    if script.during_greeting:  # talk over the greeting once 1 s of it was heard
        await until(lambda: len(phone.played) >= 8000, 15.0)
        _say_over(line, script.over_agent)
        await line.idle.wait()
        spoke = line.marks.get("over:end", time.monotonic())
        await until(lambda: quiet_for(phone, 1.5, spoke), 30.0)
        return
    await until(lambda: quiet_for(phone, 0.7, start), 20.0)  # the greeting heard out
    timeline.greeting_end = time.monotonic()
    for i, (part, pause) in enumerate(zip(script.parts, script.pauses, strict=True)):
        line.say(part, f"part{i}", first_mark=first_voiced_frame(part),
                 last_mark=max(0, last_speech_frame(part)))
        if i < len(script.parts) - 1:
            line.pause(pause)
    await line.idle.wait()
    spoke = line.marks.get(f"part{len(script.parts) - 1}:end", time.monotonic())
    line.echo = script.echo
    if script.over_agent:  # once the answer has played 1 s
        await until(lambda: sum(t > spoke for t in phone.media_times) >= 50, 30.0)
        _say_over(line, script.over_agent)
        await line.idle.wait()
    await until(lambda: quiet_for(phone, 1.5, spoke), 30.0)


def _say_over(line: Line, pcm16: bytes) -> None:
    line.say(pcm16, "over", first_mark=first_voiced_frame(pcm16),
             last_mark=max(0, last_speech_frame(pcm16)))
