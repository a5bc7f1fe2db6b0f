"""Load generator behind `voxbus load`: N synthetic callers over the gateway's PCM WebSocket.

Each caller loops over the clips: it speaks one in real time (20 ms frames), keeps the line
open with silence until the agent's turn is over, then speaks the next, until the duration is
up. One ticker sends every caller's frame each 20 ms (one timer, not N), so the generator
itself stays cheap next to the platform it measures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from voxbus_cli.caller import RATE, CallerError, load_wav
from voxbus_common.audio import frame_bytes
from voxbus_common.service import event_loop_factory

FRAME_S = 0.02
T = TypeVar("T")
FRAME = frame_bytes(RATE)
SILENCE = b"\x00" * FRAME


@dataclass
class LoadConfig:
    url: str
    calls: int
    duration_s: float
    clips: list[bytes]
    ramp_s: float = 5.0  # callers join evenly over this many seconds
    token: str = ""
    turn_timeout_s: float = 30.0  # no answer within this after a clip: counted as a timeout
    frames: list[list[bytes]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Each clip cut into padded 20 ms frames once, shared by every caller."""
        self.frames = [[pcm[i : i + FRAME].ljust(FRAME, b"\x00")
                        for i in range(0, len(pcm), FRAME)] for pcm in self.clips]


@dataclass
class LoadStats:
    """Live counters (for the progress display) and every finished turn."""

    started_at: float = field(default_factory=time.monotonic)
    connected: int = 0
    active: int = 0
    failed: int = 0
    turns: int = 0
    skipped: int = 0
    timeouts: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def error(self, message: str) -> None:
        if len(self.errors) < 200:  # keep the report readable under a storm of failures
            self.errors.append(message)


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed, so the generator spends little of the CPU it measures."""
    with asyncio.Runner(loop_factory=event_loop_factory("auto")) as runner:
        return runner.run(coro)


def load_clips(folder: Path, limit: int = 0) -> list[bytes]:
    """Every WAV under `folder` (sorted), as 16 kHz PCM16."""
    if not folder.is_dir():
        raise CallerError(f"{folder}: not a directory of audio files")
    files = sorted(folder.glob("*.wav"))
    if limit:
        files = files[:limit]
    if not files:
        raise CallerError(f"{folder}: no .wav files")
    return [load_wav(f) for f in files]


class SyntheticCaller:
    """One call: a frame source for the ticker plus a receiver of the gateway's events."""

    def __init__(self, index: int, cfg: LoadConfig, stats: LoadStats, stop_at: float) -> None:
        self.index = index
        self.cfg = cfg
        self.stats = stats
        self.stop_at = stop_at
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.done = asyncio.Event()
        self._clip = index % len(cfg.clips)
        self._pos = 0  # frame index in the current clip; -1 = waiting for the agent
        self._waiting_since = 0.0
        self._pending = 0  # utterances the gateway has not resolved yet
        self._speaking = False

    def next_frame(self, now: float) -> bytes | None:
        """The frame to send this tick; None when the call should hang up."""
        if self._pos >= 0:
            frames = self.cfg.frames[self._clip]
            frame = frames[self._pos]
            self._pos += 1
            if self._pos >= len(frames):
                self._pos, self._waiting_since = -1, now
            return frame
        settled = self._pending == 0 and not self._speaking and now - self._waiting_since > 1.0
        if not settled and now - self._waiting_since > self.cfg.turn_timeout_s:
            self.stats.timeouts += 1
            self._pending, settled = 0, True
        if settled:
            if now >= self.stop_at:
                return None
            self._clip = (self._clip + 1) % len(self.cfg.clips)
            self._pos = 0
        return SILENCE

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "vad":
            self._speaking = event.get("event") == "speech_start"
            if event.get("event") == "speech_end":
                self._pending += 1
        elif kind == "turn":
            self._pending = max(0, self._pending - 1)
            self.stats.turns += 1
            self.stats.samples.append({"call": self.index, "interrupted": event["interrupted"],
                                       "latency_ms": event.get("latency_ms", {})})
        elif kind == "turn_skipped":
            self._pending = max(0, self._pending - 1)
            self.stats.skipped += 1
        elif kind == "error":
            self.stats.error(str(event.get("message", "")))

    async def receive(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.on_event(json.loads(msg.data))
            elif msg.type != aiohttp.WSMsgType.BINARY:
                break
        self.done.set()


CallerFactory = Callable[[int, "LoadConfig", "LoadStats", float], "SyntheticCaller"]


async def run_load(cfg: LoadConfig, stats: LoadStats | None = None,
                   on_tick: Callable[[LoadStats], None] | None = None,
                   make_caller: CallerFactory | None = None) -> LoadStats:
    """Run the whole load; returns when every caller has hung up (or failed).
    `make_caller(index, cfg, stats, stop_at)`: a SyntheticCaller subclass (benchmarks)."""
    stats = stats or LoadStats()
    stop_at = time.monotonic() + cfg.ramp_s + cfg.duration_s
    factory = make_caller or SyntheticCaller
    callers = [factory(i, cfg, stats, stop_at) for i in range(cfg.calls)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        joins = [asyncio.create_task(_join(session, c, cfg, i * cfg.ramp_s / max(1, cfg.calls)))
                 for i, c in enumerate(callers)]
        await _tick(callers, stats, stop_at, on_tick)
        for join in joins:
            join.cancel()
        await asyncio.gather(*joins, return_exceptions=True)
    return stats


async def _join(session: aiohttp.ClientSession, caller: SyntheticCaller, cfg: LoadConfig,
                delay_s: float) -> None:
    await asyncio.sleep(delay_s + random.uniform(0, 0.02))  # stagger within a tick as well
    params = {"sample_rate": str(RATE), "call_id": f"load-{caller.index}-{int(time.time())}"}
    if cfg.token:
        params["token"] = cfg.token
    try:
        caller.ws = await session.ws_connect(cfg.url, params=params, heartbeat=30.0)
    except (aiohttp.ClientError, OSError) as exc:
        caller.stats.failed += 1
        caller.stats.error(f"call {caller.index} could not connect: {exc}")
        caller.done.set()
        return
    caller.stats.connected += 1
    caller.stats.active += 1
    try:
        await caller.receive()
    finally:
        caller.stats.active -= 1
        caller.done.set()


async def _tick(callers: list[SyntheticCaller], stats: LoadStats, stop_at: float,
                on_tick: Callable[[LoadStats], None] | None) -> None:
    """Every 20 ms: one frame for every connected caller; hang up the ones that are done."""
    start = time.monotonic()
    n = 0
    live = list(callers)
    while live:
        n += 1
        now = time.monotonic()
        for caller in list(live):
            if caller.done.is_set():
                live.remove(caller)
                continue
            if caller.ws is None or caller.ws.closed:
                if now > stop_at + 5.0:  # never connected by the end: give up on it
                    live.remove(caller)
                continue
            frame = caller.next_frame(now)
            try:
                if frame is None:
                    await caller.ws.send_str(json.dumps({"type": "stop"}))
                    live.remove(caller)
                else:
                    await caller.ws.send_bytes(frame)
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                stats.error(f"call {caller.index}: send failed ({exc})")
                live.remove(caller)
        if on_tick is not None and n % 25 == 0:
            on_tick(stats)
        await asyncio.sleep(max(0.0, start + n * FRAME_S - time.monotonic()))
    # the gateway closes each socket after "stop"; wait for that, bounded
    pending = [c.done.wait() for c in callers if not c.done.is_set()]
    if pending:
        await asyncio.wait([asyncio.ensure_future(p) for p in pending], timeout=30.0)
