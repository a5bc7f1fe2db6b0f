"""VOXBUS_BUS_FRAME_MS: the caller's audio goes on the bus in frames of that length, and the
gateway's audio clock and echo window follow it."""

from __future__ import annotations

from typing import cast

import pytest
from google.protobuf.message import Message
from pydantic import ValidationError

from voxbus.v1.audio_pb2 import AudioFrame
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_gateway.call import Call

from .test_call_events import Edge

RATE = 16000
EDGE_FRAME = b"\x01\x00" * (RATE // 50)  # 20 ms, as carriers send it


class FramesBus:
    def __init__(self) -> None:
        self.seq = 0
        self.frames: list[AudioFrame] = []

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        self.seq += 1
        return Meta(call_id=call_id, turn_id=turn_id, seq=self.seq)

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None:
        assert subject.endswith(".in.audio")
        self.frames.append(cast(AudioFrame, msg))


def make_call(frame_ms: int) -> tuple[Call, FramesBus]:
    bus = FramesBus()
    settings = Settings().model_copy(update={"bus_frame_ms": frame_ms,
                                             "bus_sample_rate": RATE})
    return Call(cast(Bus, bus), settings, "c1", Edge(), "gw"), bus


async def test_forty_millisecond_bus_frames_from_twenty_millisecond_edge_frames() -> None:
    call, bus = make_call(40)
    for _ in range(5):
        await call.on_caller_audio(EDGE_FRAME)
    assert [f.stream_offset_ms for f in bus.frames] == [0, 40]
    assert all(len(f.pcm) == 2 * len(EDGE_FRAME) for f in bus.frames)
    assert call.clock.offset_ms == 80
    assert call.caller_audio_since(40) == bus.frames[1].pcm  # the last 40 ms
    assert call.caller_audio_since(-10_000) == b"".join(f.pcm for f in bus.frames)


async def test_the_default_keeps_the_edge_framing() -> None:
    call, bus = make_call(Settings().bus_frame_ms)
    for _ in range(3):
        await call.on_caller_audio(EDGE_FRAME)
    assert [f.stream_offset_ms for f in bus.frames] == [0, 20, 40]


@pytest.mark.parametrize("value", ["30", "10", "80"])
def test_other_lengths_are_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXBUS_BUS_FRAME_MS", value)
    with pytest.raises(ValidationError, match="bus_frame_ms"):
        Settings()
