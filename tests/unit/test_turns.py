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
