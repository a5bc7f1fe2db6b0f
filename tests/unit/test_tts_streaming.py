"""TTS publishes a clause's chunks as the provider yields audio: the caller's first audio
does not wait for a streaming provider to finish the clause."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
from google.protobuf.message import Message

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus.v1.llm_pb2 import TtsRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_tts.streaming import stream_pieces
from voxbus_tts.worker import TtsWorker

RATE = 16000
MS = RATE * 2 // 1000  # bytes of PCM16 per millisecond


class ChunkBus:
    def __init__(self) -> None:
        self.chunks: list[AudioChunk] = []
        self.first = asyncio.Event()

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id, sent_unix_ns=1)

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None:
        self.chunks.append(cast(AudioChunk, msg))
        self.first.set()


class GatedVoice:
    """Yields 300 ms, then waits for the test to have seen a chunk go out, then 100 ms."""

    name = "gated"
    sample_rate = RATE

    def __init__(self) -> None:
        self.gate = threading.Event()

    def synthesize(self, text: str) -> Iterator[bytes]:
        yield b"\x01\x00" * (300 * MS // 2)
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the first chunk never went out before the clause was done")
        yield b"\x02\x00" * (100 * MS // 2)


async def test_the_first_chunk_goes_out_while_the_provider_still_synthesizes() -> None:
    bus, voice = ChunkBus(), GatedVoice()
    settings = Settings().model_copy(update={"tts_chunk_ms": 200, "bus_sample_rate": RATE})
    worker = TtsWorker(cast(Bus, bus), settings, voice)
    request = TtsRequest(meta=Meta(call_id="c1", turn_id=1, sent_unix_ns=1), text="Hello there.",
                         clause_index=0, sample_rate=RATE)
    clause = asyncio.create_task(worker._synthesize_clause(request))
    await asyncio.wait_for(bus.first.wait(), 60)
    assert [len(c.pcm) for c in bus.chunks] == [200 * MS] and not bus.chunks[0].last
    voice.gate.set()
    await asyncio.wait_for(clause, 60)
    assert [len(c.pcm) for c in bus.chunks] == [200 * MS, 200 * MS]  # 400 ms in all
    assert [c.last for c in bus.chunks] == [False, True]
    assert [c.chunk_index for c in bus.chunks] == [0, 1]
    assert bus.chunks[0].text == "Hello there." and bus.chunks[1].text == ""
    worker.pool.shutdown()


async def test_a_failing_provider_still_ends_the_clause() -> None:
    class Broken:
        name, sample_rate = "broken", RATE

        def synthesize(self, text: str) -> Iterator[bytes]:
            yield b"\x01\x00" * (250 * MS // 2)
            raise RuntimeError("voice server gone")

    bus = ChunkBus()
    settings = Settings().model_copy(update={"tts_chunk_ms": 200, "bus_sample_rate": RATE})
    worker = TtsWorker(cast(Bus, bus), settings, Broken())
    await worker._synthesize_clause(TtsRequest(meta=Meta(call_id="c1", turn_id=1), text="Hi.",
                                               sample_rate=RATE))
    assert [c.last for c in bus.chunks] == [False, True]  # what was said, then the end
    assert len(bus.chunks[0].pcm) == 200 * MS and len(bus.chunks[1].pcm) == 50 * MS
    worker.pool.shutdown()


async def test_pieces_arrive_one_by_one_and_errors_are_raised_in_the_loop() -> None:
    pool = ThreadPoolExecutor(1)
    seen = threading.Event()

    def pieces() -> Iterator[bytes]:
        yield b"a"
        assert seen.wait(timeout=60)
        yield b"b"
        raise ValueError("bad text")

    got = []
    with pytest.raises(ValueError, match="bad text"):
        async for piece in stream_pieces(pool, pieces):
            got.append(piece)
            seen.set()
    assert got == [b"a", b"b"]
    pool.shutdown()
