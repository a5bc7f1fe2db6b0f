"""STT failover spreads a dead replica's calls: by the survivors' heartbeat load, newest
speech first, a few take-overs in flight per survivor, and the work queue for a call a
survivor refuses or leaves unanswered. The plan is pure; the sender runs against fakes."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, cast

from voxbus.v1.call_pb2 import CallAnnounce, CallTakeReply
from voxbus.v1.meta_pb2 import Meta
from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_gateway import stt_watch
from voxbus_gateway.failover_plan import Load, Orphan, assign, by_survivor, priority
from voxbus_gateway.stt_watch import SttWatch


def orphan(call_id: str, open_: bool = False, at: float = 0.0) -> Orphan:
    return Orphan(call_id, open_, at)


def test_open_utterances_come_first_then_the_newest_speech() -> None:
    calls = [orphan("quiet-old", at=1.0), orphan("open-old", True, 2.0),
             orphan("quiet-new", at=9.0), orphan("open-new", True, 5.0), orphan("never")]
    assert [o.call_id for o in priority(calls)] == [
        "open-new", "open-old", "quiet-new", "quiet-old", "never"]


def test_calls_go_to_the_least_loaded_survivor_first() -> None:
    calls = [orphan(f"c{i}", at=float(i)) for i in range(60)]
    plan = assign(calls, {"a": Load(40, 200), "b": Load(60, 200), "c": Load(60, 200)})
    lanes = by_survivor(plan)
    # water-filling: a gets 20 to reach 60, then the three share the rest (ties by name)
    assert {name: len(lane) for name, lane in lanes.items()} == {"a": 34, "b": 13, "c": 13}
    assert [o for o, _ in plan] == priority(calls)  # the plan keeps the priority order


def test_capacity_weights_the_share() -> None:
    survivors = {"big": Load(0, 200), "small": Load(0, 100)}
    plan = assign([orphan(f"c{i}") for i in range(30)], survivors)
    lanes = by_survivor(plan)
    assert (len(lanes["big"]), len(lanes["small"])) == (20, 10)


def test_no_survivor_no_plan() -> None:
    assert assign([orphan("c1")], {}) == []


class FakeKv:
    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners

    async def get(self, key: str) -> Any:
        call_id = key.removeprefix("call.")
        doc = {"owner": self.owners[call_id], "seq": 100, "after": 2}
        return SimpleNamespace(value=json.dumps(doc).encode())


class FakeNats:
    """Survivors answer take-overs: each holds its answer until the test releases it, and
    `refuse` answers taken=False."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.asked: list[tuple[str, str]] = []  # (subject, call id) in order
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self.release = asyncio.Event()

    async def request(self, subject: str, data: bytes, timeout: float) -> Any:  # noqa: ASYNC109
        call_id = CallAnnounce.FromString(data).meta.call_id
        self.asked.append((subject, call_id))
        self.in_flight[subject] = self.in_flight.get(subject, 0) + 1
        self.most_in_flight[subject] = max(self.most_in_flight.get(subject, 0),
                                           self.in_flight[subject])
        await self.release.wait()
        self.in_flight[subject] -= 1
        reply = CallTakeReply(taken=call_id not in self.refuse, caught_up=True)
        return SimpleNamespace(data=reply.SerializeToString())


class FakeBus:
    def __init__(self, nats: FakeNats) -> None:
        self.nc = nats
        self.queued: list[str] = []

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id)

    async def publish_acked(self, subject: str, msg: CallAnnounce, **kwargs: Any) -> None:
        assert subject == subjects.WORK_CALLS
        self.queued.append(msg.meta.call_id)


def fake_call(call_id: str, heard: int, finalized: int, at: float) -> Any:
    talk = SimpleNamespace(heard_utterance=heard, caller_heard_at=at,
                           policy=SimpleNamespace(finalized_utterance=finalized))
    return SimpleNamespace(call_id=call_id, ending=False, rate=16000, gateway_id="g1",
                           edge=SimpleNamespace(name="pcm-ws"), conversation=talk)


async def test_the_dead_replicas_calls_are_spread_paced_and_refusals_queued() -> None:
    calls = [fake_call(f"c{i:02d}", heard=2, finalized=1 if i % 3 == 0 else 2, at=float(i))
             for i in range(24)]
    calls.append(fake_call("elsewhere", heard=1, finalized=1, at=50.0))  # another owner
    nats = FakeNats(refuse={"c03"})
    bus = FakeBus(nats)
    watch = SttWatch(cast(Bus, bus), 0.6, lambda: calls)
    watch.beats = cast(Any, SimpleNamespace(beats={
        "s1": {"calls": 10, "max": 100}, "s2": {"calls": 10, "max": 100}}))
    owners = {c.call_id: "dead" for c in calls} | {"elsewhere": "s1"}
    spreading = asyncio.create_task(watch._spread(cast(Any, FakeKv(owners)), "dead"))
    while len(nats.asked) < 2 * stt_watch.TAKE_WINDOW:  # each survivor's first window
        await asyncio.sleep(0)
    for _ in range(20):  # nothing more goes out while those are unanswered
        await asyncio.sleep(0)
    assert len(nats.asked) == 2 * stt_watch.TAKE_WINDOW
    nats.release.set()
    await spreading
    asked = [call_id for _, call_id in nats.asked]
    assert sorted(asked) == sorted(c.call_id for c in calls[:24])  # each once, not "elsewhere"
    by_subject: dict[str, list[str]] = {}
    for subject, call_id in nats.asked:
        by_subject.setdefault(subject, []).append(call_id)
    assert {len(v) for v in by_subject.values()} == {12}  # equal loads: an even split
    assert set(by_subject) == {subjects.stt_take("s1"), subjects.stt_take("s2")}
    assert max(nats.most_in_flight.values()) == stt_watch.TAKE_WINDOW
    # open utterances (every third call) first, newest first, alternating between the two
    assert by_subject[subjects.stt_take("s1")][:5] == ["c21", "c15", "c09", "c03", "c23"]
    assert by_subject[subjects.stt_take("s2")][:5] == ["c18", "c12", "c06", "c00", "c22"]
    assert bus.queued == ["c03"]  # the refused one went to the work queue
