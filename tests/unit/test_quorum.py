"""The gateway's bus-quorum policy: failing probes for the grace period = lost (once), one
answered probe = back; a leader election shorter than the grace is ridden out."""

from __future__ import annotations

from voxbus_gateway.quorum import LOST_REASON, QuorumState, QuorumWatch


def test_lost_only_after_the_grace_and_only_once() -> None:
    state = QuorumState(grace_s=15.0)
    assert not state.probe_failed(100.0)
    assert not state.probe_failed(114.9)
    assert state.probe_failed(115.0) and state.lost
    assert not state.probe_failed(116.0) and state.lost  # reported once


def test_an_election_shorter_than_the_grace_is_ridden_out() -> None:
    state = QuorumState(grace_s=15.0)
    state.probe_failed(0.0)
    state.probe_failed(9.0)  # 4-9 s: nats-server's meta leader election
    assert not state.probe_answered()  # no loss to end
    assert not state.probe_failed(20.0)  # a new failure starts a new count
    assert not state.lost


def test_an_answer_ends_a_loss() -> None:
    state = QuorumState(grace_s=1.0)
    state.probe_failed(0.0)
    state.probe_failed(1.0)
    assert state.probe_answered() and not state.lost


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_watch_ends_calls_once_and_takes_calls_again() -> None:
    clock = FakeClock()
    answering = False
    ended: list[str] = []

    async def probe() -> None:
        if not answering:
            raise TimeoutError("no meta leader")

    async def on_lost(reason: str) -> None:
        ended.append(reason)

    watch = QuorumWatch(probe, grace_s=3.0, on_lost=on_lost, clock=clock)
    for t in (0.0, 1.0, 2.0):
        clock.now = t
        await watch.check()
    assert not watch.lost and ended == []
    clock.now = 3.0
    await watch.check()
    clock.now = 4.0
    await watch.check()
    assert watch.lost and ended == [LOST_REASON]
    answering = True
    await watch.check()
    assert not watch.lost
