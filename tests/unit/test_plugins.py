"""Providers by import path: the factory gets the settings; every failure names the spec."""

import pytest

from voxbus_common.config import Settings
from voxbus_common.plugins import PluginError, is_plugin, load_plugin


def test_loads_factory_with_settings() -> None:
    stt = load_plugin("voxbus_testkit.instant:stt", Settings())
    assert stt.transcribe(b"\x00\x00", 16000)
    assert is_plugin("voxbus_testkit.instant:stt") and not is_plugin("whisper")


@pytest.mark.parametrize("spec, words", [
    ("no_such_module_xyz:make", "cannot import"),
    ("voxbus_testkit.instant:nope", "no callable 'nope'"),
    ("voxbus_testkit.instant:", "expected 'package.module:factory'"),
])
def test_bad_specs_are_explained(spec: str, words: str) -> None:
    with pytest.raises(PluginError, match=words):
        load_plugin(spec, Settings())


def test_services_accept_plugins_and_reject_unknown_names() -> None:
    from voxbus_llm.__main__ import make_model
    from voxbus_stt.__main__ import make_vad
    from voxbus_tts.__main__ import make_tts

    assert make_model(Settings(llm_provider="voxbus_testkit.instant:llm")).name == "instant-llm"
    assert make_tts(Settings(tts_provider="voxbus_testkit.instant:tts")).sample_rate == 22050
    assert make_vad(Settings(vad_provider="webrtc")).frame_samples == 480
    with pytest.raises(ValueError, match="known: silero, webrtc"):
        make_vad(Settings(vad_provider="nope"))
