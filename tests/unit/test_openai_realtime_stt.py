"""OpenAI Realtime transcription against a local WebSocket server speaking the protocol
(session.update, input_audio_buffer.append/commit/clear, transcription delta/completed,
error): what the stream sends, when it commits, and the text it assembles."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tests.fakes import silence, tone
from voxbus_common.cloud_speech import OpenAIAudioError
from voxbus_common.config import Settings
from voxbus_common.providers import Recognition, StreamingSpeechToText
from voxbus_stt.openai_realtime_stt import API_RATE, OpenAIRealtimeSpeechToText

MIN_COMMIT = API_RATE * 2 // 10  # the API refuses to commit less than 100 ms


@dataclass
class FakeRealtime:
    """One transcription session per connection; each commit is transcribed as
    "segment N", sent as two deltas and a completed event."""

    status: int = 200
    sessions: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)  # bytes of 24 kHz audio per commit
    cleared: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a session ended

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.status != 200:
            return web.json_response({"error": {"message": "Incorrect API key provided"}},
                                     status=self.status)
        assert request.query.get("intent") == "transcription"
        self.auth.append(request.headers.get("Authorization"))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        buffer = bytearray()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            kind = event["type"]
            if kind == "session.update":
                self.sessions.append(event["session"])
                await ws.send_json({"type": "session.updated", "session": event["session"]})
            elif kind == "input_audio_buffer.append":
                buffer += base64.b64decode(event["audio"])
            elif kind == "input_audio_buffer.clear":
                self.cleared += 1
                buffer.clear()
            elif kind == "input_audio_buffer.commit":
                if len(buffer) < MIN_COMMIT:
                    await ws.send_json({"type": "error", "error": {
                        "type": "invalid_request_error", "code": "input_audio_buffer_commit_empty",
                        "message": "buffer too small", "event_id": event.get("event_id")}})
                    continue
                self.committed.append(len(buffer))
                buffer.clear()
                item, n = f"item_{len(self.committed)}", len(self.committed)
                await ws.send_json({"type": "input_audio_buffer.committed", "item_id": item,
                                    "previous_item_id": None})
                for delta in ("seg", f"ment {n}"):
                    await ws.send_json({
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item, "content_index": 0, "delta": delta})
                await ws.send_json({
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item, "content_index": 0, "transcript": f"segment {n}"})
        self.closed.set()
        return ws


@pytest.fixture
async def realtime() -> AsyncIterator[tuple[FakeRealtime, str]]:
    fake = FakeRealtime()
    app = web.Application()
    app.router.add_get("/v1/realtime", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield fake, f"http://{host}:{port}/v1"
    finally:
        await runner.cleanup()


def ms_at_api_rate(n_bytes: int) -> int:
    return n_bytes * 1000 // (2 * API_RATE)


async def test_a_pause_commits_and_the_silence_after_it_is_cleared(
        realtime: tuple[FakeRealtime, str]) -> None:
    fake, url = realtime
    stt = OpenAIRealtimeSpeechToText(url, "sk-test", "gpt-4o-transcribe", "en")
    interims: list[str] = []
    stream = stt.open_stream(16000, interims.append)
    for _ in range(30):
        stream.push(tone(20), True)
    stream.push(silence(100), False)
    assert await stream.pause() == "segment 1"
    stream.push(silence(300), False)  # the hangover: only silence
    assert await stream.finish() == Recognition("segment 1")
    assert len(fake.committed) == 1 and fake.cleared == 1
    assert 700 - 30 <= ms_at_api_rate(fake.committed[0]) <= 700  # resampled to 24 kHz
    assert fake.auth == ["Bearer sk-test"]
    assert fake.sessions == [{"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": None}}}]
    assert interims == ["seg", "segment 1"]


async def test_speech_after_the_pause_is_a_second_segment(
        realtime: tuple[FakeRealtime, str]) -> None:
    fake, url = realtime
    stream = OpenAIRealtimeSpeechToText(url, "sk-test").open_stream(16000, lambda t: None)
    stream.push(tone(600), True)
    stream.push(silence(100), False)
    assert await stream.pause() == "segment 1"
    stream.push(tone(400), True)  # the caller went on
    stream.push(silence(300), False)
    assert (await stream.finish()).text == "segment 1 segment 2"
    assert len(fake.committed) == 2 and fake.cleared == 0
    assert ms_at_api_rate(sum(fake.committed)) >= 1400 - 30  # every byte was sent


async def test_a_refused_short_commit_leaves_its_audio_for_the_next(
        realtime: tuple[FakeRealtime, str]) -> None:
    fake, url = realtime
    stream = OpenAIRealtimeSpeechToText(url, "sk-test").open_stream(16000, lambda t: None)
    stream.push(tone(40), True)
    assert await stream.pause() == ""  # 40 ms: refused, nothing lost
    stream.push(tone(400), True)
    assert (await stream.finish()).text == "segment 1"
    assert len(fake.committed) == 1 and ms_at_api_rate(fake.committed[0]) >= 440 - 30


async def test_a_refused_key_is_a_clear_error(realtime: tuple[FakeRealtime, str]) -> None:
    fake, url = realtime
    fake.status = 401
    stream = OpenAIRealtimeSpeechToText(url, "sk-bad").open_stream(16000, lambda t: None)
    stream.push(tone(400), True)
    with pytest.raises(OpenAIAudioError, match=f"OpenAI realtime transcription at {url}"):
        await stream.finish()


async def test_a_cancelled_stream_closes_its_session(realtime: tuple[FakeRealtime, str]) -> None:
    fake, url = realtime
    stream = OpenAIRealtimeSpeechToText(url, "sk-test").open_stream(16000, lambda t: None)
    stream.push(tone(400), True)
    assert await stream.pause() == "segment 1"
    stream.cancel()
    stream.push(tone(400), True)  # ignored
    await asyncio.wait_for(fake.closed.wait(), 30)
    assert len(fake.committed) == 1


def test_settings_select_the_realtime_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxbus_stt.__main__ import make_stt

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    stt = make_stt(Settings(stt_provider="openai-realtime"))
    assert isinstance(stt, StreamingSpeechToText) and stt.capabilities.streaming
    assert stt.name == "openai-realtime-gpt-4o-mini-transcribe"
