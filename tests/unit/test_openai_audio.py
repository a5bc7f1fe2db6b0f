"""OpenAI audio providers against a local aiohttp server speaking /v1/audio/*: the requests
they send, the text and PCM they return, streaming, and error translation."""

from __future__ import annotations

import asyncio
import io
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from voxbus_common.cloud_speech import OpenAIAudioError
from voxbus_common.config import Settings
from voxbus_stt.openai_stt import OpenAISpeechToText, wav_bytes
from voxbus_tts.openai_tts import OpenAITextToSpeech, whole_samples

# HTTP chunks of a 24 kHz reply: odd lengths, so sample boundaries fall inside chunks
PCM_CHUNKS = [b"\x01\x02\x03", b"\x04\x05\x06\x07\x08", b"\x09", b"\x0a\x0b\x0c\x0d\x0e\x0f"]
ENV = ("OPENAI_API_KEY", "VOXBUS_OPENAI_AUDIO_API_KEY", "VOXBUS_OPENAI_AUDIO_BASE_URL")


@dataclass
class FakeAudioServer:
    """Records what the providers sent; `release` holds the speech reply after its first
    chunk, so a test can prove the first audio arrives before the reply is complete."""

    status: int = 200
    hold: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def refuse(self) -> web.Response | None:
        if self.status == 200:
            return None
        return web.json_response({"error": {"message": "Incorrect API key provided: sk-bad",
                                            "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=self.status)

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        self.requests.append({"auth": request.headers.get("Authorization"),
                              "model": form["model"], "response_format": form["response_format"],
                              "filename": upload.filename, "wav": upload.file.read()})
        return self.refuse() or web.json_response({"text": " I would like to check my order. "})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        refused = self.refuse()
        if refused is not None:
            return refused
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        await response.write(PCM_CHUNKS[0])
        if self.hold:
            await self.release.wait()
        for chunk in PCM_CHUNKS[1:]:
            await response.write(chunk)
        await response.write_eof()
        return response


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeAudioServer, str]]:
    fake = FakeAudioServer()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", fake.transcriptions)
    app.router.add_post("/v1/audio/speech", fake.speech)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield fake, f"http://{host}:{port}/v1"
    finally:
        fake.release.set()
        await runner.cleanup()


def test_wav_wraps_pcm_with_the_right_header() -> None:
    with wave.open(io.BytesIO(wav_bytes(b"\x01\x00" * 160 + b"\x07", 8000))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.readframes(wav.getnframes()) == b"\x01\x00" * 160


def test_whole_samples_carries_odd_bytes() -> None:
    out = list(whole_samples(PCM_CHUNKS))
    assert out == [b"\x01\x02", b"\x03\x04\x05\x06\x07\x08", b"\x09\x0a\x0b\x0c\x0d\x0e"]
    assert list(whole_samples([b"\x01", b"\x02"])) == [b"\x01\x02"]


async def test_transcribe_uploads_a_wav_and_returns_text(
        server: tuple[FakeAudioServer, str]) -> None:
    fake, url = server
    stt = OpenAISpeechToText(url, "sk-test", "whisper-large-v3")
    pcm = b"\x10\x00\xf0\xff" * 4000  # 8000 samples = 0.5 s at 16 kHz
    assert await asyncio.to_thread(stt.transcribe, pcm, 16000) == "I would like to check my order."
    (sent,) = fake.requests
    assert sent["auth"] == "Bearer sk-test"
    assert (sent["model"], sent["response_format"]) == ("whisper-large-v3", "json")
    assert sent["filename"].endswith(".wav")
    with wave.open(io.BytesIO(sent["wav"])) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() == 8000
        assert wav.readframes(8000) == pcm
    assert stt.transcribe(b"", 16000) == ""  # no request for nothing
    assert len(fake.requests) == 1


async def test_speech_streams_pcm_before_the_reply_ends(
        server: tuple[FakeAudioServer, str]) -> None:
    fake, url = server
    fake.hold = True
    tts = OpenAITextToSpeech(url, "sk-test", "tts-1", "nova", timeout_s=10.0)
    assert tts.sample_rate == 24000
    chunks = tts.synthesize("Your order shipped.")
    first = await asyncio.to_thread(next, chunks)
    assert first == b"\x01\x02"  # the server is still holding the rest of the reply
    fake.release.set()
    rest = await asyncio.to_thread(list, chunks)
    assert b"".join([first, *rest]) == b"".join(PCM_CHUNKS)[:14]
    assert all(len(c) % 2 == 0 and c for c in [first, *rest])
    assert fake.requests == [{"model": "tts-1", "voice": "nova", "input": "Your order shipped.",
                              "response_format": "pcm"}]


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_a_clear_error(server: tuple[FakeAudioServer, str],
                                            status: int) -> None:
    fake, url = server
    fake.status = status
    stt = OpenAISpeechToText(url, "sk-bad")
    with pytest.raises(OpenAIAudioError, match=rf"transcription failed: HTTP {status} from "
                                               rf"{url}: .*Incorrect API key.*OPENAI_API_KEY"):
        await asyncio.to_thread(stt.transcribe, b"\x00\x00" * 100, 16000)
    tts = OpenAITextToSpeech(url, "sk-bad")
    with pytest.raises(OpenAIAudioError, match=rf"speech synthesis failed: HTTP {status}"):
        await asyncio.to_thread(list, tts.synthesize("hello"))


async def test_unreachable_endpoint_is_a_clear_error() -> None:
    with socket.socket() as sock:  # bound, not listening: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        tts = OpenAITextToSpeech(url, "sk", timeout_s=5.0)
        with pytest.raises(OpenAIAudioError, match=f"cannot reach {url}"):
            await asyncio.to_thread(list, tts.synthesize("hello"))


@pytest.fixture
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_openai_env")
def test_settings_select_and_configure_the_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxbus_stt.__main__ import make_stt
    from voxbus_tts.__main__ import make_tts

    with pytest.raises(ValueError, match="VOXBUS_STT_PROVIDER=openai needs OPENAI_API_KEY"):
        make_stt(Settings(stt_provider="openai"))
    with pytest.raises(ValueError, match="VOXBUS_TTS_PROVIDER=openai needs OPENAI_API_KEY"):
        make_tts(Settings(tts_provider="openai"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("VOXBUS_OPENAI_TTS_VOICE", "shimmer")
    assert make_stt(Settings(stt_provider="openai")).name == "openai-gpt-4o-mini-transcribe"
    assert make_tts(Settings(tts_provider="openai")).name == "openai-gpt-4o-mini-tts-shimmer"
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("VOXBUS_OPENAI_AUDIO_BASE_URL", "http://127.0.0.1:8000/v1")
    assert isinstance(make_stt(Settings(stt_provider="openai")), OpenAISpeechToText)  # no key
