"""A checkpoint's frame: found by audio time, with gaps and any bus frame length."""

from __future__ import annotations

from voxbus_stt.frame_index import FrameIndex

RATE = 16000


def test_empty_index_has_nothing_to_resume_from() -> None:
    index = FrameIndex(RATE)
    assert not index and index.seq_at(500) == 0 and index.last == (0, 0)


def test_the_first_frame_at_or_after_the_time_with_gaps() -> None:
    index = FrameIndex(RATE)
    for offset, seq in [(0, 10), (20, 11), (40, 12), (200, 20), (220, 21)]:  # 60-180 direct
        index.add(offset, seq, 640)
    assert index.seq_at(20) == 11
    assert index.seq_at(50) == 20  # inside the gap: the first frame after it
    assert index.seq_at(-300) == 10  # older than everything kept: the oldest
    assert index.seq_at(10_000) == 21  # newer than everything: the newest
    assert index.end_ms == 240


def test_forty_millisecond_frames_end_forty_after_their_start() -> None:
    index = FrameIndex(RATE)
    for n in range(5):
        index.add(n * 40, 100 + n, 1280)
    assert index.frame_ms == 40 and index.end_ms == 200
    assert index.seq_at(80) == 102 and index.seq_at(81) == 103


def test_only_the_newest_frames_are_kept() -> None:
    index = FrameIndex(RATE, kept=3)
    for n in range(6):
        index.add(n * 20, n + 1, 640)
    assert index.seq_at(0) == 4  # frames 1-3 are gone: the oldest kept
    index.clear()
    assert not index
