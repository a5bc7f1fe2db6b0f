"""The atheris driver finds the suites' targets, and each accepts raw fuzzer bytes."""

from __future__ import annotations

import pytest

from tests.fuzz.atheris_driver import main, targets


def test_targets_are_discovered() -> None:
    found = targets()
    assert len(found) >= 20
    assert {"test_edge_parsers:test_parse_json_object", "test_audiosocket:test_any_byte_stream",
            "test_bus_messages:test_apply_event", "test_agent_files:test_any_text",
            "test_control_inputs:test_verify_any_token"} <= set(found)


@pytest.mark.parametrize("data", [b"", b"\x00" * 64, bytes(range(256)), b"\xff" * 512])
def test_every_target_takes_raw_bytes(data: bytes) -> None:
    for fuzz_one_input in targets().values():
        fuzz_one_input(data)  # raises only if the example itself fails


def test_cli_lists_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["driver", "--list"]) == 0
    assert "test_edge_parsers:test_parse_json_object" in capsys.readouterr().out
    assert main(["driver", "no_such_target"]) == 2
