"""Recognition streams: a batch provider behind the streaming interface (batch_stream.py),
and a call session feeding a streaming provider utterance by utterance (session.py)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from google.protobuf.message import Message

from tests.fakes import EnergyVad, silence, tone
from voxbus.v1.audio_pb2 import AudioFrame
from voxbus.v1.meta_pb2 import Meta
from voxbus.v1.speech_pb2 import Transcript
from voxbus_common import subjects
from voxbus_common.providers import (
    Recognition,
    StreamingSpeechToText,
    SttCapabilities,
    Word,
)
from voxbus_stt.batch_stream import BatchStreaming, as_streaming
from voxbus_stt.endpointer import Endpointer, EndpointerConfig
from voxbus_stt.session import CallSession

RATE = 16000


def ms(n_bytes: int) -> int:
    return n_bytes * 1000 // (2 * RATE)


class CountingStt:
    """Batch provider whose text is the audio's length in ms; counts its decodes."""

    name = "counting"

    def __init__(self) -> None:
        self.decoded: list[int] = []
        self.lock = threading.Lock()

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        with self.lock:
            self.decoded.append(ms(len(pcm)))
        return f"{ms(len(pcm))} ms"


async def settle(stream: Any) -> None:
    """Wait for the stream's interim decode in flight, if any, and its report."""
    if stream._interim is not None:
        await asyncio.gather(stream._interim, return_exceptions=True)


async def test_interims_come_every_interval_of_speech_and_never_in_a_pause() -> None:
    stt = CountingStt()
    interims: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        stream = BatchStreaming(stt, pool, interim_ms=300).open_stream(RATE, interims.append)
        stream.push(tone(200), True)  # the opening push (pre-roll + first speech)
        for _ in range(20):  # 400 ms more speech, 20 ms at a time
            stream.push(tone(20), True)
            await asyncio.sleep(0)
        await settle(stream)
        assert interims == ["500 ms"]  # 200 + 300 ms of speech
        for _ in range(30):  # a 600 ms pause: no interim however long
            stream.push(silence(20), False)
        await settle(stream)
        assert interims == ["500 ms"]
        stream.push(tone(20), True)  # speech again, past the next interval
        await settle(stream)
        assert interims == ["500 ms", "1220 ms"]


async def test_the_pause_decode_is_the_final_when_only_silence_follows() -> None:
    stt = CountingStt()
    with ThreadPoolExecutor(1) as pool:
        stream = BatchStreaming(stt, pool, interim_ms=0).open_stream(RATE, lambda t: None)
        stream.push(tone(600), True)
        stream.push(silence(100), False)
        assert await stream.pause() == "700 ms"
        stream.push(silence(300), False)  # the hangover
        assert await stream.finish() == Recognition("700 ms")
    assert stt.decoded == [700]  # decoded once, at the pause


async def test_speech_after_the_pause_is_decoded_again() -> None:
    stt = CountingStt()
    with ThreadPoolExecutor(1) as pool:
        stream = BatchStreaming(stt, pool, interim_ms=0).open_stream(RATE, lambda t: None)
        stream.push(tone(600), True)
        stream.push(silence(100), False)
        assert await stream.pause() == "700 ms"
        stream.push(tone(200), True)  # the caller went on
        stream.push(silence(300), False)
        assert (await stream.finish()).text == "1200 ms"
    assert stt.decoded == [700, 1200]


async def test_a_cancelled_stream_reports_no_interim() -> None:
    stt = CountingStt()
    interims: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        stream = BatchStreaming(stt, pool, interim_ms=100).open_stream(RATE, interims.append)
        stream.push(tone(100), True)
        stream.push(tone(100), True)  # an interim decode starts
        stream.cancel()
        await settle(stream)
    assert interims == []


class FailingStt:
    name = "failing"

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        raise RuntimeError("model crashed")


async def test_a_failing_interim_is_logged_and_the_stream_goes_on() -> None:
    interims: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        stream = BatchStreaming(FailingStt(), pool, interim_ms=100).open_stream(
            RATE, interims.append)
        stream.push(tone(100), True)
        stream.push(tone(100), True)
        await settle(stream)
        assert interims == []
        try:
            await stream.finish()
        except RuntimeError as exc:
            assert "model crashed" in str(exc)
        else:
            raise AssertionError("the final's failure is the session's to log")


class ScriptedStream:
    """A streaming provider's stream: records the audio it is given."""

    def __init__(self, on_interim: Any) -> None:
        self.audio = bytearray()
        self.speaking: list[bool] = []
        self.on_interim = on_interim
        self.cancelled = False

    def push(self, pcm: bytes, speaking: bool) -> None:
        self.audio += pcm
        self.speaking.append(speaking)
        if speaking and ms(len(self.audio)) >= 400 and len(self.speaking) % 10 == 0:
            self.on_interim(f"heard {ms(len(self.audio))}")

    async def pause(self) -> str:
        return f"paused at {ms(len(self.audio))}"

    async def finish(self) -> Recognition:
        return Recognition("two words", (Word("two", 40, 300), Word("words", 320, 600)))

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedStreaming:
    name = "scripted-streaming"
    capabilities = SttCapabilities(streaming=True, interim_results=True, word_timings=True)

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    def open_stream(self, sample_rate: int, on_interim: Any) -> ScriptedStream:
        self.streams.append(ScriptedStream(on_interim))
        return self.streams[-1]


class FakeSub:
    async def unsubscribe(self) -> None:
        return None


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id, seq=1)

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None:
        self.sent.append((subject, msg))

    async def ordered(self, subject: str, cb: Any, start_seq: int = 0) -> FakeSub:
        return FakeSub()

    async def subscribe(self, subject: str, cb: Any) -> FakeSub:
        return FakeSub()

    def forget_subjects(self, call_id: str) -> None:
        return None

    def transcripts(self) -> list[Transcript]:
        return [m for s, m in self.sent if s == subjects.transcript("c1")
                and isinstance(m, Transcript)]


def test_a_streaming_provider_is_used_as_it_is() -> None:
    provider = ScriptedStreaming()
    with ThreadPoolExecutor(1) as pool:
        assert as_streaming(provider, pool, 300) is provider
        adapted = as_streaming(CountingStt(), pool, 300)
    assert isinstance(adapted, StreamingSpeechToText)
    assert adapted.capabilities == SttCapabilities(streaming=False, interim_results=True)


async def test_the_session_streams_each_utterance_and_places_its_words_in_call_time() -> None:
    bus, provider = FakeBus(), ScriptedStreaming()
    cfg = EndpointerConfig(min_speech_ms=96, hangover_ms=320, pre_roll_ms=192)
    with ThreadPoolExecutor(1) as pool:
        session = CallSession(cast(Any, bus), "c1", Endpointer(EnergyVad(), cfg), provider,
                              pool)
        await session.start()
        audio = silence(1024) + tone(992) + silence(1024) + tone(640) + silence(320)
        for seq, i in enumerate(range(0, len(audio), 640), start=1):
            frame = AudioFrame(meta=Meta(call_id="c1", seq=seq), sample_rate=RATE,
                               pcm=audio[i: i + 640], stream_offset_ms=ms(i))
            await session._process(frame, seq)
        await session.close()

    first, second = provider.streams
    # each stream got exactly its utterance's audio (pre-roll, speech, hangover), in order
    assert ms(len(first.audio)) >= 192 + 992 + 320 - 32
    assert first.speaking[0] and not first.speaking[-1]
    assert second.audio and second.speaking[0]
    finals = [t for t in bus.transcripts() if t.final]
    assert [t.utterance_id for t in finals] == [1, 2]
    assert finals[0].text == "two words"
    origin = 1024 - 192  # the first stream starts with the pre-roll
    assert [(w.text, w.start_ms, w.end_ms) for w in finals[0].words] == [
        ("two", origin + 40, origin + 300), ("words", origin + 320, origin + 600)]
    partials = [t for t in bus.transcripts() if not t.final]
    assert any(t.text.startswith("heard") for t in partials)  # the provider's interims
    assert any(t.stable and t.text.startswith("paused at") for t in partials)
