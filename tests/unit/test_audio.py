import math

import pytest

from tests.fakes import silence, tone
from voxbus_common.audio import Framer, StreamResampler, frame_bytes, resample_pcm16, rms_dbfs


def test_frame_bytes() -> None:
    assert frame_bytes(16000) == 640
    assert frame_bytes(8000) == 320


def test_framer_recuts_any_chunking() -> None:
    framer = Framer(640)
    out = framer.push(b"\x01" * 1000) + framer.push(b"\x02" * 500)
    assert [len(f) for f in out] == [640, 640]
    rest = framer.flush()
    assert len(rest) == 640 and rest.endswith(b"\x00")
    assert framer.flush() == b""


def test_framer_refuses_odd_sizes() -> None:
    with pytest.raises(ValueError):
        Framer(641)


def test_resample_keeps_duration() -> None:
    pcm = tone(1000, rate=22050)
    out = resample_pcm16(pcm, 22050, 16000)
    assert abs(len(out) // 2 - 16000) <= 2
    assert resample_pcm16(pcm, 16000, 16000) is pcm


def test_stream_resampler_total_length() -> None:
    rs = StreamResampler(8000, 16000)
    src = tone(1000, rate=8000)
    out = b"".join(rs.process(src[i : i + 320]) for i in range(0, len(src), 320))
    out += rs.process(b"", last=True)
    assert abs(len(out) // 2 - 16000) <= 32


def test_rms() -> None:
    assert rms_dbfs(silence(100)) == -math.inf
    assert -15 < rms_dbfs(tone(100, amp=0.3)) < -8


def test_integer_ratio_resampling_holds_back_two_ms_at_most() -> None:
    """8 <-> 16 kHz (every telephone edge) releases each 20 ms frame at once: soxr held
    frames back in ~100 ms blocks, which every 8 kHz call paid in both directions."""
    for src, dst in ((8000, 16000), (16000, 8000), (16000, 48000), (48000, 16000)):
        rs = StreamResampler(src, dst)
        frame = tone(440, rate=src)[: src // 50 * 2]
        sent = got = 0
        for _ in range(50):
            got += len(rs.process(frame)) // 2
            sent += len(frame) // 2
            assert sent * dst / src - got <= dst * 0.002 + 1, (src, dst)
        got += len(rs.process(b"", last=True)) // 2
        assert got == sent * dst // src
