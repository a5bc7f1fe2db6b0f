"""STT's frame order: frames a stream missed arrive later (asked again from the gateway)
and are put back in order; duplicates are dropped; a gap nobody fills is given up on."""

from __future__ import annotations

from voxbus_stt.frame_order import FrameOrder, Gap


def test_in_order_frames_pass_straight_through() -> None:
    order: FrameOrder[str] = FrameOrder()
    assert order.push(7, "a") == ["a"]  # the first frame sets where the call is
    assert order.push(8, "b") == ["b"]
    assert order.gap() is None


def test_a_gap_holds_later_frames_until_it_is_filled() -> None:
    order: FrameOrder[int] = FrameOrder()
    order.push(1, 1)
    assert order.push(5, 5) == [] and order.push(6, 6) == []
    assert order.gap() == Gap(2, 4) and order.gap().frames == 3  # type: ignore[union-attr]
    assert order.push(3, 3) == []  # still missing 2
    assert order.push(2, 2) == [2, 3]
    assert order.push(4, 4) == [4, 5, 6]
    assert order.gap() is None and order.held == 0


def test_frames_asked_again_that_had_arrived_are_dropped() -> None:
    order: FrameOrder[int] = FrameOrder()
    for seq in (1, 2, 3):
        order.push(seq, seq)
    assert order.push(2, 2) == [] and order.duplicates == 1
    order.push(5, 5)
    assert order.push(5, 5) == [] and order.duplicates == 2


def test_giving_up_skips_the_gap_and_counts_the_loss() -> None:
    order: FrameOrder[int] = FrameOrder()
    order.push(1, 1)
    order.push(4, 4)
    order.push(5, 5)
    assert order.give_up() == ([4, 5], 2)
    assert order.push(6, 6) == [6]
    assert order.give_up() == ([], 0)


def test_too_much_held_gives_up_by_itself() -> None:
    order: FrameOrder[int] = FrameOrder(max_held=3)
    order.push(1, 1)
    for seq in (3, 4, 5):
        assert order.push(seq, seq) == []
    assert order.push(6, 6) == [3, 4, 5, 6]


def test_what_is_missing_at_the_end_of_the_call() -> None:
    order: FrameOrder[int] = FrameOrder()
    order.push(1, 1)
    order.push(2, 2)
    assert order.want_up_to(2) is None
    assert order.want_up_to(9) == Gap(3, 9)


def test_frames_read_directly_wait_for_the_stream_to_say_where_the_session_starts() -> None:
    """A take-over: live frames came straight off the subject before the stream's replay
    from the checkpoint; the replayed (older) frames are the start, not duplicates."""
    order: FrameOrder[int] = FrameOrder()
    assert order.push(50, 50, anchor=False) == [] and order.push(51, 51, anchor=False) == []
    assert order.gap() is None  # (nothing is known to be missing before the start)
    assert order.push(47, 47) == [47]
    assert order.push(48, 48) == [48]
    assert order.gap() == Gap(49, 49)
    assert order.push(49, 49) == [49, 50, 51]
    assert order.duplicates == 0
    assert order.push(50, 50) == [] and order.duplicates == 1  # the stream's copy


def test_with_no_stream_frame_the_session_starts_from_the_oldest_held() -> None:
    order: FrameOrder[int] = FrameOrder()
    order.push(9, 9, anchor=False)
    order.push(8, 8, anchor=False)
    assert order.anchor_at_held() == [8, 9]
    assert order.push(10, 10, anchor=False) == [10]  # anchored: direct frames flow
    assert order.anchor_at_held() == []


def test_held_frames_older_than_the_stream_start_are_dropped() -> None:
    order: FrameOrder[int] = FrameOrder()
    order.push(3, 3, anchor=False)
    assert order.push(5, 5) == [5]
    assert order.held == 0 and order.gap() is None
