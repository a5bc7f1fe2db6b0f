"""A final transcript is said twice (voxbus_stt.session): a copy published while the
gateway's connection moves to another node is lost, and with it the caller's turn; the
gateway takes the first copy it gets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from google.protobuf.message import Message

from voxbus.v1.meta_pb2 import Meta
from voxbus.v1.speech_pb2 import Transcript
from voxbus_common import subjects
from voxbus_stt import session_output
from voxbus_stt.session import CallSession


class FakeNc:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str] | None]] = []

    async def publish(self, subject: str, data: bytes,
                      headers: dict[str, str] | None = None) -> None:
        self.sent.append((subject, data, headers))


class FakeBus:
    def __init__(self) -> None:
        self.nc = FakeNc()

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id, seq=1)

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None:
        await self.nc.publish(subject, msg.SerializeToString())


def session(bus: FakeBus) -> CallSession:
    endpointer = SimpleNamespace(vad=SimpleNamespace(sample_rate=16000))
    return CallSession(cast(Any, bus), "c1", cast(Any, endpointer), cast(Any, None),
                       cast(Any, None))


async def test_a_final_is_published_again_marked_as_a_repeat(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_output, "FINAL_REPEAT_S", 0.0)
    bus = FakeBus()
    s = session(bus)
    await s.out.transcript(3, False, "a table", 0, 0, 0, 0.0)  # a partial: once
    await s.out.transcript(3, True, "a table for two", 0, 900, 1, 12.0)
    await asyncio.gather(*s.out.repeats)
    assert [(subject, Transcript.FromString(data).final, headers)
            for subject, data, headers in bus.nc.sent] == [
        (subjects.transcript("c1"), False, None), (subjects.transcript("c1"), True, None),
        (subjects.transcript("c1"), True, {subjects.REPEAT_HEADER: "1"})]
    assert bus.nc.sent[1][1] == bus.nc.sent[2][1]  # the same final, word for word
