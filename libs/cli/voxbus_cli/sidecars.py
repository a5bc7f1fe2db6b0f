"""Starts an agent's sidecar: a local process its tools talk to (the example restaurant's
booking service), run in the agent's folder and waited for until its ready URL answers."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from voxbus_cli.embedded import EmbeddedError, spawn
from voxbus_common.agent import Sidecar

READY_TIMEOUT_S = 60.0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return 200 <= int(resp.status) < 300
    except (OSError, urllib.error.URLError):
        return False


def command_line(car: Sidecar, state: Path) -> list[str]:
    return [part.replace("{python}", sys.executable).replace("{state}", str(state))
            for part in car.command]


def start_sidecar(car: Sidecar, folder: Path, state: Path, env: dict[str, str],
                  log: IO[bytes] | None) -> subprocess.Popen[bytes]:
    if car.ready_url and answers(car.ready_url):
        raise EmbeddedError(f"sidecar {car.name}: something already answers at "
                            f"{car.ready_url} (another voxbus run?)")
    state.mkdir(parents=True, exist_ok=True)
    try:
        proc = spawn(command_line(car, state), env={**env, **car.env}, log=log, cwd=folder)
    except OSError as exc:
        raise EmbeddedError(f"sidecar {car.name} could not start: {exc}") from None
    if not car.ready_url:
        return proc
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"sidecar {car.name} exited with code {proc.returncode}")
        if answers(car.ready_url):
            return proc
        time.sleep(0.1)
    proc.terminate()
    raise EmbeddedError(f"sidecar {car.name} did not answer at {car.ready_url} within "
                        f"{READY_TIMEOUT_S:.0f} s")
