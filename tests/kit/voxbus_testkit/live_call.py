"""A caller that stays on the line (test helper): streams clips when asked, silence otherwise,
and records every event, so a test can steer the call from outside and wait for what the
gateway reports (event-based waits, generous bounds)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from voxbus_common.audio import frame_bytes

RATE = 16000
FRAME = frame_bytes(RATE)


class LiveCall:
    def __init__(self, url: str, **params: str) -> None:
        self.url = url
        self.params = {"sample_rate": str(RATE), **params}
        self.events: list[dict[str, Any]] = []
        self.call_id = ""
        self._changed = asyncio.Event()
        self._pending = bytearray()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> LiveCall:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, params=self.params)
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._send())]
        await self.wait_for(lambda e: e["type"] == "call")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(json.dumps({"type": "stop"}))
            await asyncio.wait_for(self._tasks[0], 30)
        for task in self._tasks:
            task.cancel()
        if self._http is not None:
            await self._http.close()

    def speak(self, pcm: bytes) -> None:
        """Queue `pcm` (16 kHz PCM16); it goes out in real time after what is queued."""
        self._pending += pcm

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], after: int = 0,
                       timeout_s: float = 120.0) -> dict[str, Any]:
        """The first event from index `after` on that matches (waits for it to arrive)."""
        deadline = time.monotonic() + timeout_s
        while True:
            hit = next((e for e in self.events[after:] if match(e)), None)
            if hit is not None:
                return hit
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event; got {self.events[after:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _receive(self) -> None:
        assert self._ws is not None
        reason = ""
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                if event.get("type") == "call":
                    self.call_id = event["call_id"]
                self.events.append(event)
                self._changed.set()
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                reason = str(msg.extra or "")
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                              aiohttp.WSMsgType.ERROR):
                break
        # the gateway's close code and reason say why a call ended (shown when a test fails)
        self.events.append({"type": "socket_closed", "code": self._ws.close_code,
                            "reason": reason})
        self._changed.set()

    async def _send(self) -> None:
        assert self._ws is not None
        start, sent = time.monotonic(), 0
        while not self._ws.closed:
            chunk = bytes(self._pending[:FRAME]).ljust(FRAME, b"\0")
            del self._pending[:FRAME]
            await self._ws.send_bytes(chunk)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))
