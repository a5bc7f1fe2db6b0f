"""A scripted caller: streams a WAV file to the gateway in real time and records the reply.

Used by `voxbus call`, the integration tests and the benchmark. It speaks the raw PCM
WebSocket edge: 20 ms PCM16 frames up, agent audio and JSON events down.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf

from voxbus_cli.speech_end import last_speech_frame
from voxbus_common.audio import frame_bytes, resample_pcm16

RATE = 16000


class CallerError(RuntimeError):
    """A problem the user can fix (bad file, no gateway); the message says how."""


def load_wav(path: Path, rate: int = RATE) -> bytes:
    """Any audio file libsndfile reads -> mono PCM16 at `rate`. Garbage is refused."""
    if not path.is_file():
        raise CallerError(f"{path}: no such file")
    try:
        data, src_rate = sf.read(str(path), dtype="int16", always_2d=True)
    except Exception as exc:
        raise CallerError(f"{path}: not a readable audio file ({exc})") from None
    if data.size == 0:
        raise CallerError(f"{path}: the file holds no audio")
    mono = data.mean(axis=1).astype(np.int16) if data.shape[1] > 1 else data[:, 0]
    return resample_pcm16(mono.tobytes(), int(src_rate), rate)


@dataclass
class CallResult:
    call_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    reply_pcm: bytearray = field(default_factory=bytearray)
    ended_reason: str = ""
    speech_end_sent: float | None = None  # monotonic time the clip's last speech frame left
    first_reply_after_end: float | None = None  # monotonic time of the answer's first audio
    greeting_wait_s: float = 0.0  # how long the caller listened to the greeting first

    @property
    def caller_voice_to_voice_ms(self) -> float | None:
        """Caller-side latency: last speech frame sent -> first audio of the agent's answer
        received (a greeting or re-prompt playing then is not an answer)."""
        if self.speech_end_sent is None or self.first_reply_after_end is None:
            return None
        return round((self.first_reply_after_end - self.speech_end_sent) * 1000, 1)

    @property
    def turns(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "turn"]

    @property
    def caller_text(self) -> str:
        return " ".join(e["text"] for e in self.events
                        if e.get("type") == "transcript" and e.get("final")).strip()

    @property
    def agent_text(self) -> str:
        return " ".join(t["agent_text"] for t in self.turns if t.get("agent_text")).strip()

    @property
    def errors(self) -> list[str]:
        return [e.get("message", "") for e in self.events if e.get("type") == "error"]

    def summary(self) -> dict[str, Any]:
        answers = [t for t in self.turns if t.get("user_text")]  # not the greeting
        first = answers[0] if answers else self.turns[0] if self.turns else {}
        return {
            "call_id": self.call_id,
            "caller_text": self.caller_text,
            "agent_text": self.agent_text,
            "latency_ms": first.get("latency_ms", {}),
            "turns": [{k: t.get(k) for k in ("turn", "user_text", "agent_text", "heard_text",
                                             "interrupted", "latency_ms")} for t in self.turns],
            "caller_voice_to_voice_ms": self.caller_voice_to_voice_ms,
            "reply_audio_seconds": round(len(self.reply_pcm) / 2 / RATE, 2),
            "errors": self.errors,
            "ended": self.ended_reason,
        }


async def place_call(url: str, pcm: bytes, *, call_id: str = "", timeout_s: float = 90.0,
                     tail_silence_s: float = 1.0, token: str = "",
                     speech_end_frame: int | None = None, caller: str = "",
                     wait_for_greeting: bool = True) -> CallResult:
    """Stream `pcm` (16 kHz PCM16) as a caller would, then wait for every turn to finish.

    `wait_for_greeting`: listen to the agent's greeting (silence on the line) before
    speaking, as people do; False talks over it. `speech_end_frame`: index of the 20 ms frame
    where the caller's speech ends, for the caller-side voice-to-voice measurement (None:
    found in `pcm` by speech_end.py). `caller`: the caller's identity for long-term memory
    (loopback gateways without media tokens)."""
    if speech_end_frame is None:
        speech_end_frame = last_speech_frame(pcm)
    result = CallResult()
    params = {"sample_rate": str(RATE)}
    if call_id:
        params["call_id"] = call_id
    if token:
        params["token"] = token
    if caller:
        params["caller"] = caller
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, params=params, heartbeat=20.0)
        except aiohttp.WSServerHandshakeError as exc:
            raise CallerError(f"the gateway refused the call: {exc.status} {exc.message}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise CallerError(f"no gateway reachable at {url} ({exc}); is `make run` running?"
                              ) from None
        async with ws:
            await _converse(ws, pcm, result, timeout_s, tail_silence_s, speech_end_frame,
                            wait_for_greeting)
    return result


async def _converse(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, result: CallResult,
                    timeout_s: float, tail_silence_s: float, speech_end_frame: int,
                    wait_for_greeting: bool) -> None:
    state = {"speech_ends": 0, "resolved": 0, "speaking": False, "greeting": 0,
             "answering": False}
    file_done = asyncio.Event()
    settled = asyncio.Event()
    may_speak = asyncio.Event()
    if not wait_for_greeting:
        may_speak.set()

    def check_settled() -> None:
        if (file_done.is_set() and not state["speaking"]
                and state["resolved"] >= state["speech_ends"]):
            settled.set()

    async def receive() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                result.reply_pcm += msg.data
                if (state["answering"] and result.speech_end_sent is not None
                        and result.first_reply_after_end is None):
                    result.first_reply_after_end = time.monotonic()
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            result.events.append(event)
            kind = event.get("type")
            if kind == "call":
                result.call_id = event["call_id"]
            elif kind == "greeting":
                state["greeting"] = event.get("turn") or 0
                if not state["greeting"]:
                    may_speak.set()  # no greeting: the caller speaks first
            elif kind == "speaking":  # the audio that follows is this turn's
                state["answering"] = bool(event.get("answer"))
            elif kind == "vad":
                state["speaking"] = event["event"] == "speech_start"
                if event["event"] == "speech_end":
                    state["speech_ends"] += 1
            elif kind == "turn_skipped" or (kind == "turn" and event.get("user_text")):
                state["resolved"] += 1  # (a greeting or re-prompt answers no utterance)
            if kind == "turn" and event.get("turn") == state["greeting"]:
                may_speak.set()  # the greeting was heard out (or cut off)
            elif kind == "clear":  # a reply to an earlier part of the clip was cut off
                result.first_reply_after_end = None
            elif kind == "ended":
                result.ended_reason = event.get("reason", "")
            check_settled()
        may_speak.set()
        settled.set()  # the gateway closed the call (the agent hung up): nothing to wait for

    async def send() -> None:
        frame = frame_bytes(RATE)
        silence = b"\x00" * frame
        start = time.monotonic()
        sent = 0
        while not may_speak.is_set():  # an open line: silence while the greeting plays
            await ws.send_bytes(silence)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))
        result.greeting_wait_s = round(time.monotonic() - start, 2)
        start, sent = time.monotonic(), 0
        offsets = range(0, len(pcm), frame)
        tail_frames = int(tail_silence_s * 1000 / 20)
        for off in offsets:
            chunk = pcm[off : off + frame]
            if sent == speech_end_frame:
                result.speech_end_sent = time.monotonic()
            await ws.send_bytes(chunk + b"\x00" * (frame - len(chunk)))
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))
        for _ in range(tail_frames):
            await ws.send_bytes(silence)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))
        file_done.set()
        check_settled()
        while not settled.is_set():  # keep the line open like a phone: silence until done
            await ws.send_bytes(silence)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))

    receiver = asyncio.create_task(receive())
    sender = asyncio.create_task(send())
    try:
        await asyncio.wait_for(settled.wait(), timeout=timeout_s + len(pcm) / 2 / RATE)
    except TimeoutError:
        result.events.append({"type": "error", "message": "timed out waiting for the agent"})
    finally:
        sender.cancel()
    if not ws.closed:
        await ws.send_str(json.dumps({"type": "stop"}))
        try:
            await asyncio.wait_for(receiver, timeout=30.0)
        except TimeoutError:
            receiver.cancel()
    else:
        receiver.cancel()


def save_wav(path: Path, pcm: bytes, rate: int = RATE) -> None:
    sf.write(str(path), np.frombuffer(pcm, dtype="<i2"), rate, subtype="PCM_16")
