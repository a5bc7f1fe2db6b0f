"""`voxbus forget-caller`: where it finds NATS, and a clear error when nothing answers."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from voxbus_cli.embedded import free_port
from voxbus_cli.forget import running_nats_url
from voxbus_cli.main import app


def test_nats_url_comes_from_the_running_stack(tmp_path: Path) -> None:
    assert running_nats_url(tmp_path, "nats://default:4222") == "nats://default:4222"
    (tmp_path / "run.json").write_text(json.dumps({"nats_url": "nats://127.0.0.1:5555"}))
    assert running_nats_url(tmp_path, "nats://default:4222") == "nats://127.0.0.1:5555"
    (tmp_path / "run.json").write_text("not json")
    assert running_nats_url(tmp_path, "nats://default:4222") == "nats://default:4222"


def test_unreachable_nats_is_a_clear_error() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["forget-caller", "+15550100199", "--nats-url", url])
    assert result.exit_code == 2
    assert "cannot reach NATS" in result.output
