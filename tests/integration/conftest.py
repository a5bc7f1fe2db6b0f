"""Integration fixtures: a real nats-server on a free port, the real llama.cpp server with
SmolLM2, and the five real services as separate processes, started once per test session."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from voxbus.v1.memory_pb2 import Session
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.subjects import SESSIONS_BUCKET

SPEECH = Path(__file__).resolve().parents[2] / "speech"


def words(text: str) -> str:
    """Lower-case words only, for transcript comparisons."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("voxbus")
    s = Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
              env={"VOXBUS_LOG_LEVEL": "INFO",
                   "VOXBUS_AUDIOSOCKET_PORT": str(free_port()),
                   # longer answers leave room to talk over the agent in barge-in tests
                   "VOXBUS_SYSTEM_PROMPT": "You are a friendly phone assistant. "
                                           "Always answer in three full sentences."})
    s.start()
    try:
        s.wait_ready(timeout_s=240)
        yield s
    finally:
        s.stop()
        for log in sorted((workdir / "logs").glob("*.log")):
            if log.name not in ("llama.log", "nats.log"):
                print(f"\n===== {log.name} (last lines) =====")
                print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))


def assert_services_alive(stack: Stack) -> None:
    dead = {name: p.returncode for name, p in stack.service_procs.items() if p.poll() is not None}
    assert not dead, f"services died: {dead}"


async def wait_for_session(stack: Stack, call_id: str, done: Callable[[Session], bool],
                           timeout_s: float = 120.0) -> Session:
    """Watch the call's KV entry until `done(session)` (event-based, bounded)."""
    nc = await nats.connect(stack.nats_url)
    try:
        kv = await nc.jetstream().key_value(SESSIONS_BUCKET)
        watcher = await kv.watch(call_id)
        deadline = time.monotonic() + timeout_s
        last = Session()
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    entry = await watcher.updates(timeout=remaining)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                if entry is None or not entry.value:
                    continue
                last = Session()
                last.ParseFromString(entry.value)
                if done(last):
                    return last
        finally:
            await watcher.stop()
    finally:
        await nc.close()
    raise AssertionError(f"session {call_id} never reached the expected state: {last}")
