"""The liveness beacon against a real nats-server: it beats from its own thread while its
process's loop turns, and falls silent when the loop is wedged. (Watching across a NATS
restart is covered end to end by test_nats_restart.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

from voxbus_cli.embedded import start_nats, stop_all
from voxbus_common.beacon import Beacon
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.subjects import STT_BUCKET

WAIT_S = 60.0  # generous: only catches a hang


async def test_a_beacon_beats_while_its_loop_turns_and_falls_silent_when_wedged(
        tmp_path: Path) -> None:
    proc, url = start_nats(tmp_path / "nats")
    settings = Settings().model_copy(update={"nats_url": url})
    bus = await Bus.connect(settings, "gateway-w")
    kv = await bus.stt_kv()
    watcher = await kv.watch("replica.x")
    beacon = Beacon(settings, "stt-x", STT_BUCKET, "replica.x", 0.05, lambda: {"calls": 3},
                    stall_s=1.0)
    beacon.start()

    async def next_beat(timeout_s: float) -> dict[str, object] | None:
        try:
            while True:
                entry = await watcher.updates(timeout=timeout_s)  # type: ignore[no-untyped-call]
                if entry is not None and entry.value:
                    return dict(json.loads(entry.value))
        except TimeoutError:
            return None

    try:
        beat = await next_beat(WAIT_S)
        assert beat is not None and beat["calls"] == 3  # its state rides on every beat
        deadline = time.monotonic() + WAIT_S  # nobody ticks: the loop looks wedged
        while await next_beat(3.0) is not None:  # until 3 s pass without a beat
            assert time.monotonic() < deadline, "a wedged process kept beating"
        beacon.tick()  # the loop turns again: so do the beats
        assert await next_beat(WAIT_S) is not None
    finally:
        await beacon.stop()
        await watcher.stop()  # type: ignore[no-untyped-call]
        await bus.nc.close()
        stop_all([proc])
