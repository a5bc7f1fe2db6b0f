"""docs/configuration.md lists every setting the code reads, with its variable and default,
and nothing else (regenerate: python -m voxbus_common.config_docs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voxbus_common.config import SECTIONS, SERVICES, CoreSettings, Settings, TtsSettings
from voxbus_common.config_docs import BEGIN, END, env_names, reference
from voxbus_common.doc_blocks import block

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_settings_reference_is_the_code() -> None:
    generated = block(DOC.read_text(), BEGIN, END)
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


def test_the_sections_split_the_settings_and_keep_the_variable_names() -> None:
    """Each field lives in exactly one section class; `Settings` is their union and reads
    the same variables (VOXBUS_<FIELD>, or the listed aliases) as each section alone."""
    owners: dict[str, list[str]] = {}
    for section in SECTIONS:
        for name in section.model_fields:
            owners.setdefault(name, []).append(section.__name__)
    assert all(len(found) == 1 for found in owners.values()), owners
    assert set(owners) == set(Settings.model_fields)


def test_a_section_reads_its_variables_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXBUS_TTS_CHUNK_MS", "120")
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    assert TtsSettings().tts_chunk_ms == Settings().tts_chunk_ms == 120
    assert CoreSettings().nats_url == Settings().nats_url == "nats://elsewhere:4222"


def test_each_service_is_typed_to_its_own_settings() -> None:
    """Each service's main takes its own class (so mypy rejects reading another service's
    knob), and together the service classes read every setting."""
    import importlib
    import inspect

    for service, cls in SERVICES.items():
        main = importlib.import_module(f"voxbus_{service}.__main__").main
        assert inspect.signature(main).parameters["settings"].annotation in (
            cls.__name__, cls), service
    read = set().union(*(cls.model_fields for cls in SERVICES.values()))
    assert read == set(Settings.model_fields)
