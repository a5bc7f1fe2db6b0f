"""One STT session per call: an announcement delivered twice while the first delivery is
still setting the call up (a starved replica acks late, a failover re-announces) never
starts a second session."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, cast

import pytest

import voxbus_stt.worker as worker_module
from voxbus.v1.call_pb2 import CallAnnounce
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_stt.worker import SttWorker
from voxbus_testkit.instant import InstantSpeechToText


class FakeSession:
    started: ClassVar[list[str]] = []

    def __init__(self, bus: object, call_id: str, *args: Any, **kwargs: Any) -> None:
        self.call_id = call_id
        self.endpointer = args[0]  # (its detector goes back to the worker's pool)
        self.closed = asyncio.Event()

    async def start(self) -> None:
        FakeSession.started.append(self.call_id)


class SlowKv:
    """The lease write waits until the test lets it go (NATS under load)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def put(self, key: str, value: bytes) -> int:
        await self.release.wait()
        return 1


class FakeBus:
    name = "stt-test"


class Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


def test_a_redelivered_announcement_starts_no_second_session(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "CallSession", FakeSession)
    FakeSession.started = []

    async def run() -> None:
        worker = SttWorker(cast(Bus, FakeBus()), Settings(), InstantSpeechToText(), QuietVad)
        worker.kv = kv = cast(Any, SlowKv())
        announce = CallAnnounce(sample_rate=Settings().bus_sample_rate)
        announce.meta.call_id = "call-1"
        msg = cast(Any, Msg(announce.SerializeToString()))
        first = asyncio.create_task(worker.on_call(msg))
        await asyncio.sleep(0)  # the first delivery is now waiting on its lease write
        again = asyncio.create_task(worker.on_call(msg))  # the redelivery
        await asyncio.sleep(0)
        kv.release.set()
        await asyncio.wait_for(asyncio.gather(first, again), 30)
        for task in list(worker._background):  # (the reaper waits for the call's end)
            task.cancel()
        worker.pool.shutdown(wait=False)
        worker.detector_pool.shutdown(wait=False)

    asyncio.run(run())
    assert FakeSession.started == ["call-1"]


class FailingSession(FakeSession):
    """Its audio consumer cannot be made the first time (NATS too slow), then can."""

    failures: ClassVar[int] = 1

    async def start(self) -> None:
        if FailingSession.failures:
            FailingSession.failures -= 1
            raise TimeoutError("nats: timeout")
        await super().start()

    async def handover(self) -> tuple[int, int]:
        self.closed.set()
        return 0, 0


class QuietVad:
    sample_rate = 16000
    frame_samples = 512

    def speech_probability(self, frame: bytes) -> float:
        return 0.0

    def reset(self) -> None:
        return None


class FreeKv:
    async def put(self, key: str, value: bytes) -> int:
        return 1


def test_a_call_whose_session_failed_to_start_is_taken_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No zombie: the redelivery after a failed start starts the session (before, the
    half-made session was taken for the call and the caller went unheard)."""
    monkeypatch.setattr(worker_module, "CallSession", FailingSession)
    FakeSession.started = []

    async def run() -> None:
        worker = SttWorker(cast(Bus, FakeBus()), Settings(), InstantSpeechToText(), QuietVad)
        worker.kv = cast(Any, FreeKv())
        announce = CallAnnounce(sample_rate=Settings().bus_sample_rate)
        announce.meta.call_id = "call-2"
        msg = cast(Any, Msg(announce.SerializeToString()))
        with pytest.raises(TimeoutError):
            await worker.on_call(msg)
        assert "call-2" not in worker.sessions and "call-2" not in worker.leases
        assert worker.vads.free == 1  # the half-made session's detector went back
        await worker.on_call(msg)  # the queue's redelivery
        assert "call-2" in worker.sessions
        assert worker.vads.made == 1 and worker.vads.free == 0
        for task in list(worker._background):
            task.cancel()
        worker.pool.shutdown(wait=False)
        worker.detector_pool.shutdown(wait=False)

    asyncio.run(run())
    assert FakeSession.started == ["call-2"]
