"""Integration fixtures: a real nats-server on a free port, the real llama.cpp server with
SmolLM2, and the five real services as separate processes, started once per test session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack

SPEECH = Path(__file__).resolve().parents[2] / "speech"


def words(text: str) -> str:
    """Lower-case words only, for transcript comparisons."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("voxbus")
    s = Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
              env={"VOXBUS_LOG_LEVEL": "INFO"})
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
