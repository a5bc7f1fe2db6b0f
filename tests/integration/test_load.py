"""`voxbus load` against the real services and nats-server with instant test providers:
the callers connect, speak, get answered, and the JSON + PNG report says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_testkit.instant import instant_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def instant_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("instant")
    env = instant_env()
    env["PYTHONPATH"] = str(ROOT)
    with Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
               env=env).running() as s:
        yield s


def test_load_generator_report(instant_stack: Stack, tmp_path: Path) -> None:
    audio = tmp_path / "clips"
    audio.mkdir()
    for wav in sorted((ROOT / "speech").glob("*.wav"))[:2]:
        shutil.copy(wav, audio / wav.name)
    prefix = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "voxbus_cli", "load", "--calls", "3", "--duration", "4",
         "--ramp", "1", "--audio", str(audio), "--url", instant_stack.gateway_url,
         "--report", str(prefix)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(prefix.with_suffix(".json").read_text())
    summary = doc["summary"]
    assert summary["calls_connected"] == 3 and summary["calls_failed"] == 0
    assert summary["turns"] >= 3 and summary["errors"] == 0, doc["errors"]
    v2v = summary["stages_ms"]["voice_to_voice"]
    assert v2v["n"] >= 1 and v2v["p50"] > 0
    assert len(doc["voice_to_voice_ms"]) == v2v["n"]
    assert prefix.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "active" in proc.stdout  # the progress display printed at least once


def test_load_refuses_a_folder_without_audio(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "voxbus_cli", "load", "--audio", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no .wav files" in proc.stderr
