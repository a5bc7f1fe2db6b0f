import numpy as np
import pytest

from tests.fakes import tone
from voxbus_gateway.edges.jitter import ReorderBuffer
from voxbus_gateway.edges.transcode import Transcoder, UnsupportedFormat, encoding_from_mime

S = b"--"  # silence marker


def test_reordered_frames_come_out_in_order() -> None:
    rb = ReorderBuffer(depth=3)
    out: list[bytes] = []
    for seq in (1, 3, 2, 5, 4, 6):
        out += rb.push(seq, bytes([seq]), S)
    assert out == [bytes([i]) for i in range(1, 7)]
    assert rb.lost == 0


def test_duplicates_and_late_frames_are_dropped() -> None:
    rb = ReorderBuffer(depth=2)
    assert rb.push(1, b"a", S) == [b"a"]
    assert rb.push(1, b"a", S) == []
    assert rb.push(2, b"b", S) == [b"b"]
    assert rb.push(1, b"x", S) == [] and rb.late == 2


def test_a_lost_frame_becomes_silence_after_depth_frames() -> None:
    rb = ReorderBuffer(depth=2)
    out = rb.push(1, b"a", S)
    for seq in (3, 4, 5):  # 2 never arrives
        out += rb.push(seq, bytes([seq]), S)
    assert out == [b"a", S, b"\x03", b"\x04", b"\x05"] and rb.lost == 1


def test_a_big_jump_is_a_restart_not_a_loss_storm() -> None:
    rb = ReorderBuffer(depth=2, max_gap=50)
    rb.push(1, b"a", S)
    assert rb.push(10_000, b"z", S) == [b"z"] and rb.lost == 0


@pytest.mark.parametrize(("mime", "enc"), [("audio/x-mulaw", "mulaw"), ("PCMU", "mulaw"),
                                           ("PCMA", "alaw"), ("audio/L16;rate=8000", "l16be"),
                                           ("audio/x-l16", "l16be")])
def test_encodings_from_mime(mime: str, enc: str) -> None:
    assert encoding_from_mime(mime) == enc


def test_unsupported_formats_are_refused() -> None:
    with pytest.raises(UnsupportedFormat):
        encoding_from_mime("audio/opus")
    with pytest.raises(UnsupportedFormat):
        Transcoder("mulaw", 11025, 16000)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw", "l16be", "pcm16le"])
@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_round_trip_through_the_bus_format(encoding: str, rate: int) -> None:
    codec = Transcoder(encoding, rate, 16000)
    bus = tone(400, rate=16000, freq=300, amp=0.4)
    carrier = codec.from_bus(bus)
    # the streaming resampler holds back its filter delay (21 ms at 2:1, ~56 ms at 3:2)
    assert rate * 0.34 <= len(carrier) // codec.sample_bytes <= rate * 0.4
    back = np.frombuffer(codec.to_bus(carrier), dtype="<i2").astype(float)
    assert 0.25 * 32767 < np.sqrt(np.mean(back**2)) < 0.33 * 32767
