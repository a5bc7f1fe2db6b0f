"""docs/configuration.md lists every setting the code reads, with its variable and default,
and nothing else (regenerate: python -m voxbus_common.config_docs)."""

from __future__ import annotations

import re
from pathlib import Path

from voxbus_common.config import Settings
from voxbus_common.config_docs import BEGIN, END, env_names, reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_settings_reference_is_the_code() -> None:
    text = DOC.read_text()
    generated = text[text.index(BEGIN):text.index(END) + len(END)]
    assert generated == reference(), "stale: python -m voxbus_common.config_docs"


def test_every_field_is_listed_once_under_its_variable() -> None:
    listed = re.findall(r"^\| `(\w+)`", reference(), re.M)
    assert sorted(listed) == sorted(env_names(name)[0] for name in Settings.model_fields)
    assert "`VOXBUS_NATS_URL` or `NATS_URL`" in reference()
    assert "| `VOXBUS_TTS_CHUNK_MS` | `200` |" in reference()


def test_no_variable_in_the_page_is_unknown_to_the_code() -> None:
    known = {env for name in Settings.model_fields for env in env_names(name)}
    named = set(re.findall(r"\bVOXBUS_[A-Z0-9_]+", DOC.read_text()))
    # (VOXBUS_EMBEDDED_MODEL is read by `make run` and `voxbus run`, not by Settings)
    assert named - known <= {"VOXBUS_EMBEDDED_MODEL"}
