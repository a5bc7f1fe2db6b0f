"""Audio primitives with arbitrary bytes, lengths and chunkings: G.711 both ways, PCM16
resampling between the supported rates (whole buffers and streamed), the Framer, loudness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import examples
from voxbus_common.audio import Framer, StreamResampler, resample_pcm16, rms_dbfs
from voxbus_common.g711 import (
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    swap16,
    ulaw_to_pcm16,
)

RATES = (8000, 16000, 24000, 48000)
pcm16 = st.binary(max_size=4000).map(lambda b: b[: len(b) - len(b) % 2])
CODECS = {"ulaw": (ulaw_to_pcm16, pcm16_to_ulaw), "alaw": (alaw_to_pcm16, pcm16_to_alaw)}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_g711_every_sample(name: str) -> None:
    """Exhaustive over all 65,536 PCM16 values and 256 codes: encoding is a projection onto
    the codes (decode(encode(decode(c))) == decode(c)) and its error stays within the
    segment's quantization step."""
    decode, encode = CODECS[name]
    codes = bytes(range(256))
    assert decode(encode(decode(codes))) == decode(codes)
    x = np.arange(-32768, 32768, dtype="<i2")
    y = np.frombuffer(decode(encode(x.tobytes())), dtype="<i2").astype(np.int32)
    error = np.abs(y - x.astype(np.int32))
    assert int(np.max(error - np.abs(x.astype(np.int32)) // 16)) <= 64


@pytest.mark.parametrize("name", sorted(CODECS))
def test_g711_arbitrary_bytes(name: str) -> None:
    decode, encode = CODECS[name]

    @examples(600)
    @given(st.binary(max_size=2000))
    def check(data: bytes) -> None:
        pcm = decode(data)  # any byte is a valid code
        assert len(pcm) == 2 * len(data)
        assert encode(pcm) == encode(decode(encode(pcm)))
        if len(data) % 2:
            with pytest.raises(ValueError):
                encode(data)  # half a sample is refused, never misread
        else:
            assert len(encode(data)) == len(data) // 2

    check()


@examples(400)
@given(st.binary(max_size=2000))
def test_swap16(data: bytes) -> None:
    if len(data) % 2:
        with pytest.raises(ValueError):
            swap16(data)
        return
    assert swap16(swap16(data)) == data and len(swap16(data)) == len(data)


@examples(150)
@given(pcm16, st.sampled_from(RATES), st.sampled_from(RATES))
def test_resample_whole_buffer(pcm: bytes, src: int, dst: int) -> None:
    out = resample_pcm16(pcm, src, dst)
    assert len(out) % 2 == 0
    expected = len(pcm) // 2 * dst / src
    assert abs(len(out) // 2 - expected) <= 1


@examples(150)
@given(st.lists(pcm16.map(lambda b: b[:1200]), max_size=10), st.sampled_from(RATES),
       st.sampled_from(RATES))
def test_stream_resampler_any_chunking(chunks: list[bytes], src: int, dst: int) -> None:
    """Any chunking (empty chunks too) yields whole samples, and once flushed the stream's
    length is the input's at the new rate."""
    rs = StreamResampler(src, dst)
    out = b"".join(rs.process(c) for c in chunks) + rs.process(b"", last=True)
    assert len(out) % 2 == 0
    n_in = sum(len(c) for c in chunks) // 2
    assert abs(len(out) // 2 - n_in * dst / src) <= 2


@examples(500)
@given(st.integers(-4, 4000), st.lists(st.binary(max_size=900), max_size=12))
def test_framer(size: int, chunks: list[bytes]) -> None:
    try:
        framer = Framer(size)
    except ValueError:
        assert size <= 0 or size % 2
        return
    frames = [f for c in chunks for f in framer.push(c)]
    assert all(len(f) == size for f in frames)
    rest = framer.flush()
    assert len(rest) in (0, size)
    data = b"".join(chunks)
    assert b"".join(frames) == data[: len(frames) * size]
    assert rest == (data[len(frames) * size:] + b"\0" * size)[: len(rest)]
    assert framer.flush() == b""


@examples(500)
@given(st.binary(max_size=2000))
def test_rms_dbfs(data: bytes) -> None:
    level = rms_dbfs(data)
    assert not math.isnan(level) and level <= 0.1
