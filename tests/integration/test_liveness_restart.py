"""Liveness against a real nats-server, watched across a NATS restart: a replica that keeps
beating is never declared dead because the watcher was cut off (the gateway once ended its
own calls and re-announced a live STT replica's calls after a broker restart), and a replica
that stops beating after the restart still is (the watch was made again). The beacon's own
test is test_beacon.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from voxbus_cli.embedded import start_nats, stop_all
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_gateway.liveness import Heartbeats

WAIT_S = 60.0  # generous: only catches a hang


async def beat(bus: Bus, name: str, stopped: asyncio.Event) -> None:
    """Beat until `stopped`. Not until cancelled: on Python 3.11 a cancel that arrives with
    the put's acknowledgement is swallowed by asyncio.wait_for inside nats-py, and the
    replica meant to die beat on (the cause of this test's flake, 1 run in ~10 under load)."""
    kv = await bus.stt_kv()
    while not stopped.is_set():
        with contextlib.suppress(Exception):  # NATS away: the next beat tries again
            await kv.put(f"replica.{name}", json.dumps({"t": time.time()}).encode())
        await asyncio.sleep(0.1)


async def test_blindness_is_not_death_and_the_watch_survives_a_restart(tmp_path: Path) -> None:
    proc, url = start_nats(tmp_path / "nats")
    port = int(url.rsplit(":", 1)[1])
    settings = Settings().model_copy(update={"nats_url": url})
    watcher_bus = await Bus.connect(settings, "gateway-w")
    beater_bus = await Bus.connect(settings, "stt-b")
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    watcher_bus.after_reconnect(on_reconnect)
    dead: list[str] = []
    b_dead = asyncio.Event()

    async def on_dead(name: str) -> None:
        dead.append(name)
        if name == "b":
            b_dead.set()

    stops = {n: asyncio.Event() for n in ("a", "b", "me")}
    beaters = {n: asyncio.create_task(beat(beater_bus, n, stops[n])) for n in stops}
    heartbeats = Heartbeats(watcher_bus, await watcher_bus.stt_kv(), "replica", 2.0, on_dead,
                            ignore="me")
    await heartbeats.start()
    try:
        await asyncio.wait_for(_until(lambda: {"a", "b"} <= heartbeats.beats.keys()), WAIT_S)
        stop_all([proc])
        proc, _ = start_nats(tmp_path / "nats", port=port)
        await asyncio.wait_for(reconnected.wait(), WAIT_S)
        stops["me"].set()  # its own name is never judged, beating or not
        stops["b"].set()  # b dies after the restart: the new watch must notice
        await asyncio.wait_for(asyncio.gather(beaters["me"], beaters["b"]), WAIT_S)
        await asyncio.wait_for(b_dead.wait(), WAIT_S)
        assert dead == ["b"]  # a kept beating through the restart; "me" is this process
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*beaters.values()), WAIT_S)
        await heartbeats.stop()
        await watcher_bus.nc.close()
        await beater_bus.nc.close()
        stop_all([proc])


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.05)
