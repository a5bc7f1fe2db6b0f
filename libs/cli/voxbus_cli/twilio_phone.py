"""A phone on Twilio's side of a Media Stream, for scripted callers (`bench/turns.py`, the
Twilio tests): it streams caller audio as μ-law frames, plays the agent's media in real time
from a buffer, echoes each mark when the audio before it has been played, and on `clear`
drops what it buffered and echoes the pending marks at once (as Twilio documents). What
the caller heard, and when each agent frame and each clear arrived, is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from voxbus_common.audio import resample_pcm16
from voxbus_common.g711 import pcm16_to_ulaw, ulaw_to_pcm16


@dataclass
class TwilioPhone:
    ws: aiohttp.ClientWebSocketResponse
    stream_sid: str = "MZsim"
    played: bytearray = field(default_factory=bytearray)  # μ-law the "phone" played
    marks_echoed: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    first_media_at: float = 0.0
    media_frames: int = 0
    media_times: list[float] = field(default_factory=list)  # arrival of each agent frame
    _queue: list[tuple[str, Any]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    got_media: asyncio.Event = field(default_factory=asyncio.Event)
    got_clear: asyncio.Event = field(default_factory=asyncio.Event)
    _played_waiters: list[tuple[int, asyncio.Event]] = field(default_factory=list)
    _seq: int = 0
    _chunk: int = 1

    async def send(self, doc: dict[str, Any]) -> None:
        self._seq += 1
        if doc.get("event") != "connected":
            doc.setdefault("sequenceNumber", str(self._seq))
            doc.setdefault("streamSid", self.stream_sid)
        await self.ws.send_str(json.dumps(doc))

    async def start(self, call_sid: str, encoding: str = "audio/x-mulaw") -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send({"event": "start", "start": {
            "streamSid": self.stream_sid, "accountSid": "ACsim", "callSid": call_sid,
            "tracks": ["inbound"], "customParameters": {"who": "test"},
            "mediaFormat": {"encoding": encoding, "sampleRate": 8000, "channels": 1}}})

    async def speak(self, pcm16_16k: bytes) -> None:
        """Stream audio in real time as 20 ms μ-law media messages."""
        ulaw = pcm16_to_ulaw(resample_pcm16(pcm16_16k, 16000, 8000))
        started = time.monotonic()
        for n, i in enumerate(range(0, len(ulaw), 160), 1):
            await self.media(ulaw[i : i + 160].ljust(160, b"\xff"))
            await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))

    async def media(self, ulaw_frame: bytes) -> None:
        await self.send({"event": "media", "media": {
            "track": "inbound", "chunk": str(self._chunk), "timestamp": str(self._chunk * 20),
            "payload": base64.b64encode(ulaw_frame).decode()}})
        self._chunk += 1

    async def silence_until(self, done: asyncio.Event) -> None:
        """An open phone line: silence in real time until `done` is set."""
        started = time.monotonic()
        n = 0
        while not done.is_set():
            await self.media(b"\xff" * 160)
            n += 1
            await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))

    async def wait_played(self, seconds: float, timeout_s: float = 60.0) -> None:
        """Until the phone has played `seconds` of agent audio."""
        event = asyncio.Event()
        self._played_waiters.append((int(seconds * 8000), event))
        self._check_played()
        await asyncio.wait_for(event.wait(), timeout=timeout_s)

    def _check_played(self) -> None:
        for need, event in self._played_waiters:
            if len(self.played) >= need:
                event.set()

    async def receive(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            doc = json.loads(msg.data)
            event = doc.get("event")
            if event == "media":
                self._queue.append(("media", base64.b64decode(doc["media"]["payload"])))
                now = time.monotonic()
                if not self.first_media_at:
                    self.first_media_at = now
                self.media_times.append(now)
                self.media_frames += 1
                self.got_media.set()
            elif event == "mark":
                self._queue.append(("mark", doc["mark"]["name"]))
            elif event == "clear":
                self.clears.append(time.monotonic())
                pending = [v for k, v in self._queue if k == "mark"]
                self._queue.clear()
                for name in pending:  # cleared marks are echoed at once
                    await self.send({"event": "mark", "mark": {"name": name}})
                self.got_clear.set()
            self._wake.set()

    async def play(self) -> None:
        """The phone's loudspeaker: one 20 ms frame every 20 ms; marks echo when reached."""
        next_due = time.monotonic()
        while True:
            while self._queue and self._queue[0][0] == "mark":
                name = self._queue.pop(0)[1]
                self.marks_echoed.append(name)
                await self.send({"event": "mark", "mark": {"name": name}})
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                next_due = time.monotonic()
                continue
            self.played += self._queue.pop(0)[1]
            self._check_played()
            next_due += 0.02
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))

    def played_pcm16(self) -> bytes:
        return ulaw_to_pcm16(bytes(self.played))


TwilioSim = TwilioPhone  # (the tests' name for it)
