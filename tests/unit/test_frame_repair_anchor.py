"""STT's frame repair at a session's start: frames read directly wait for the stream's first
frame (a take-over's replay), and are not lost if the stream never delivers one."""

from __future__ import annotations

import asyncio

import pytest

from voxbus.v1.audio_pb2 import AudioFrame
from voxbus.v1.meta_pb2 import Meta
from voxbus_stt import frame_repair
from voxbus_stt.frame_order import Gap
from voxbus_stt.frame_repair import FrameRepair


def frame(seq: int) -> AudioFrame:
    return AudioFrame(meta=Meta(call_id="c", seq=seq), sample_rate=16000, pcm=b"\0\0")


class Sink:
    def __init__(self, want: int) -> None:
        self.seqs: list[int] = []
        self.want = want
        self.done = asyncio.Event()

    async def process(self, f: AudioFrame, stream_seq: int) -> None:
        self.seqs.append(f.meta.seq)
        if len(self.seqs) >= self.want:
            self.done.set()


async def no_ask(gap: Gap) -> None:
    raise AssertionError(f"nothing is missing, yet {gap} was asked for")


async def test_replayed_frames_come_before_the_live_ones_read_directly() -> None:
    sink = Sink(want=4)
    repair = FrameRepair(no_ask, sink.process)
    await repair.push(frame(11), 0)  # live, read straight off the subject
    await repair.push(frame(12), 0)
    await repair.push(frame(9), 900)  # the stream's replay from the checkpoint
    await repair.push(frame(10), 901)
    await asyncio.wait_for(sink.done.wait(), 10)
    assert sink.seqs == [9, 10, 11, 12]
    repair.stop()


async def test_with_no_stream_frame_the_held_frames_are_heard_after_a_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_repair, "ANCHOR_WAIT_S", 0.01)
    sink = Sink(want=2)
    repair = FrameRepair(no_ask, sink.process)
    await repair.push(frame(5), 0)
    await repair.push(frame(6), 0)
    await asyncio.wait_for(sink.done.wait(), 10)
    assert sink.seqs == [5, 6]
    repair.stop()


async def test_a_call_ending_before_the_stream_delivers_hears_the_held_frames() -> None:
    sink = Sink(want=2)
    repair = FrameRepair(no_ask, sink.process)
    await repair.push(frame(5), 0)
    await repair.push(frame(6), 0)
    await repair.drain_to(6)
    assert sink.seqs == [5, 6]
    repair.stop()
