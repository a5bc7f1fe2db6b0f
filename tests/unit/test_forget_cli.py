"""`voxbus forget-caller` and the other commands: where they find the running stack (from
any directory, owner-only files), and a clear error when nothing answers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voxbus_cli.embedded import free_port
from voxbus_cli.forget import admin_settings
from voxbus_cli.main import app
from voxbus_cli.state import clear_running, find_running, pointer_file, write_running


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("VOXBUS_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_the_running_stack_is_found_from_any_directory(
        homes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = homes / "project"
    (project / "sub" / "dir").mkdir(parents=True)
    elsewhere = homes / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_running() == {}
    path = write_running(project / ".voxbus", {"nats_url": "nats://127.0.0.1:5555",
                                               "pid": os.getpid()})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds tokens and passwords
    assert stat.S_IMODE(pointer_file().stat().st_mode) == 0o600
    assert find_running()["nats_url"] == "nats://127.0.0.1:5555"  # through the pointer
    monkeypatch.chdir(project / "sub" / "dir")  # a parent's .voxbus
    pointer_file().unlink()
    assert find_running()["nats_url"] == "nats://127.0.0.1:5555"
    clear_running(project / ".voxbus")
    assert find_running() == {}


def test_a_stale_or_broken_file_is_skipped(homes: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(homes)
    (homes / ".voxbus").mkdir()
    (homes / ".voxbus" / "run.json").write_text("not json")
    assert find_running() == {}
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    (homes / ".voxbus" / "run.json").write_text(json.dumps({"pid": dead, "nats_url": "x"}))
    assert find_running() == {}


def test_state_dir_setting_wins(homes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXBUS_STATE_DIR", str(homes / "state"))
    write_running(homes / "state", {"control": "127.0.0.1:1"})
    assert find_running()["control"] == "127.0.0.1:1"


def test_admin_credentials_come_from_the_running_stack() -> None:
    settings = admin_settings({"VOXBUS_NATS_USER": "admin", "VOXBUS_NATS_PASSWORD": "pw"})
    assert (settings.nats_user, settings.nats_password) == ("admin", "pw")
    assert admin_settings(None).nats_user == ""


def test_unreachable_nats_is_a_clear_error() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["forget-caller", "+15550100199", "--nats-url", url])
    assert result.exit_code == 2
    assert "cannot reach NATS" in result.output
