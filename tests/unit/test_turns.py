from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.turns import StaleTurns


def test_cancel_makes_older_turns_stale() -> None:
    stale = StaleTurns()
    assert not stale.is_stale("c", 1)
    stale.observe(CallEvent(meta=Meta(call_id="c", turn_id=3),
                            cancel_turn=CallEvent.CancelTurn(reason="x")))
    assert stale.is_stale("c", 3) and stale.is_stale("c", 1)
    assert not stale.is_stale("c", 4)
    assert not stale.is_stale("other", 1)


def test_ending_makes_every_turn_stale() -> None:
    stale = StaleTurns()
    stale.observe(CallEvent(meta=Meta(call_id="c"), ending=CallEvent.Ending(reason="bye")))
    assert stale.is_stale("c", 10_000)


def test_bounded_memory() -> None:
    stale = StaleTurns(max_calls=2)
    for name in ("a", "b", "c"):
        stale.cancel(name, 1)
    assert not stale.is_stale("a", 1) and stale.is_stale("c", 1)


def test_ended_calls_are_kept_apart_and_bounded() -> None:
    """A live call's cancel is never pushed out by calls that ended; ended calls are
    remembered for the last `ended_kept` of them (a long-lived worker stays flat)."""
    stale = StaleTurns(max_calls=100, ended_kept=3)
    stale.cancel("live", 2)
    for i in range(10):
        stale.observe(CallEvent(meta=Meta(call_id=f"gone-{i}"),
                                ended=CallEvent.Ended(reason="bye")))
    assert stale.is_stale("live", 2) and not stale.is_stale("live", 3)
    assert stale.is_stale("gone-9", 1) and stale.is_stale("gone-7", 1)
    assert not stale.is_stale("gone-0", 1)  # long gone: forgotten
    assert len(stale._ended) == 3 and list(stale._cancelled) == ["live"]
