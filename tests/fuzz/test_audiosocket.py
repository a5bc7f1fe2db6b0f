"""Asterisk AudioSocket's binary TCP framing (type, uint16 length, payload) from arbitrary
byte streams: the handshake yields a call id or a ProtocolViolation, the pump a (reason,
code) pair; a well-formed stream delivers exactly its audio, however it is split."""

from __future__ import annotations

import asyncio
import struct
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import examples, run_bounded
from tests.fuzz.fake_ws import RecordingCall
from voxbus_common.ids import validate_call_id
from voxbus_gateway.edges.audiosocket import AUDIO, DTMF, ERROR, HANGUP, UUID, AudioSocketEdge
from voxbus_gateway.edges.base import ProtocolViolation

BUS_RATE = 8000  # AudioSocket's own rate: the transcoder passes audio through unchanged


class FakeWriter:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def frame(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind]) + struct.pack(">H", len(payload)) + payload


async def serve(chunks: list[bytes]) -> tuple[str, int, RecordingCall, FakeWriter]:
    """Feed `chunks` as the TCP stream (then EOF) and run the edge as the gateway does."""
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    writer = FakeWriter()
    edge = AudioSocketEdge(reader, cast(asyncio.StreamWriter, writer), BUS_RATE)
    call = RecordingCall()
    try:
        validate_call_id(await edge.handshake())
    except ProtocolViolation as exc:
        await edge.finish(str(exc), exc.code)
        return str(exc), exc.code, call, writer
    reason, code = await edge.pump(call.as_call())
    await edge.finish(reason, code)
    assert writer.closed and writer.data.endswith(frame(HANGUP))
    return reason, code, call, writer


frames = st.one_of(
    st.binary(max_size=640).map(lambda p: frame(AUDIO, p)),
    st.binary(max_size=3).map(lambda p: frame(DTMF, p)),
    st.binary(min_size=16, max_size=16).map(lambda p: frame(UUID, p)),
    st.tuples(st.integers(0, 255), st.binary(max_size=64)).map(lambda t: frame(*t)),
    st.just(frame(HANGUP)), st.binary(max_size=2).map(lambda p: frame(ERROR, p)),
    st.binary(max_size=40),  # raw garbage, including headers that promise more than follows
)


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@examples(800)
@given(st.lists(frames, max_size=12).map(b"".join).flatmap(split),
       st.booleans())
def test_any_byte_stream(chunks: list[bytes], with_uuid: bool) -> None:
    if with_uuid:
        chunks = [frame(UUID, b"\x01" * 16), *chunks]
    reason, code, _, _ = run_bounded(serve(chunks))
    assert reason and code in (1000, 1008, 1011)


@examples(400)
@given(st.lists(st.binary(max_size=400), max_size=10), st.data())
def test_well_formed_stream_delivers_exactly_its_audio(payloads: list[bytes],
                                                      data: st.DataObject) -> None:
    stream = frame(UUID, bytes(range(16))) + b"".join(frame(AUDIO, p) for p in payloads)
    chunks = data.draw(split(stream + frame(HANGUP)))
    reason, code, call, _ = run_bounded(serve(chunks))
    assert (reason, code) == ("carrier hung up", 1000)
    assert b"".join(call.audio) == b"".join(p for p in payloads if len(p) % 2 == 0)
