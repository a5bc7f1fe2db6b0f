"""The smart-turn end-of-turn model with our own features, on real speech, and its failure
modes: a missing or corrupt model file, garbage and short audio."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxbus_common.config import Settings
from voxbus_stt.__main__ import make_end_of_turn
from voxbus_stt.log_mel import log_mel, mel_filters, window_audio
from voxbus_stt.smart_turn import EndOfTurnModelError, SmartTurnDetector

SPEECH = Path(__file__).resolve().parents[2] / "speech"


@pytest.fixture(scope="module")
def detector() -> SmartTurnDetector:
    return SmartTurnDetector()


def clip(name: str, until_s: float | None = None, pause_s: float = 0.2) -> bytes:
    """A clip's PCM16 up to `until_s`, then `pause_s` of silence (the pause being judged)."""
    data, rate = sf.read(str(SPEECH / name), dtype="int16")
    assert rate == 16000
    if until_s is not None:
        data = data[: int(until_s * rate)]
    return bytes(data.tobytes()) + b"\x00\x00" * int(pause_s * rate)


def test_features_match_faster_whispers_extractor() -> None:
    """Our log-mel against another implementation of Whisper's (faster-whisper's, which does
    not normalise: feed it the normalised waveform)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    audio, _ = sf.read(str(SPEECH / "jfk_inaugural_1961.wav"), dtype="float32")
    window = window_audio(audio, 8.0)
    ours = log_mel(window)
    normalised = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    reference = FeatureExtractor()(normalised, padding=0)
    assert ours.shape == reference.shape == (80, 800)
    assert float(np.abs(ours - reference).max()) < 1e-3
    assert np.allclose(mel_filters(), FeatureExtractor().mel_filters)


def test_window_keeps_the_latest_audio_and_pads_on_the_left() -> None:
    short = np.ones(16000, dtype=np.float32)
    padded = window_audio(short, 8.0)
    assert len(padded) == 128000 and padded[:112000].max() == 0 and padded[-1] == 1
    long = np.arange(200000, dtype=np.float32)
    assert window_audio(long, 8.0)[-1] == 199999 and window_audio(long, 8.0)[0] == 72000
    assert window_audio(np.zeros(0, dtype=np.float32), 8.0).shape == (128000,)


def test_a_finished_sentence_is_complete(detector: SmartTurnDetector) -> None:
    for name in ("ls_test_8455-210777-0068.wav", "osr_us0034_8k_s02.wav"):
        assert detector.completion_probability(clip(name), 16000) >= 0.5, name


def test_a_pause_inside_a_sentence_is_not_complete(detector: SmartTurnDetector) -> None:
    """JFK: "And so my fellow Americans, ask not [pause] what your country can do for you"."""
    p = detector.completion_probability(clip("jfk_inaugural_1961.wav", until_s=4.45), 16000)
    assert p < 0.5


@pytest.mark.parametrize("pcm", [
    b"",  # nothing yet
    b"\x01",  # an odd byte
    b"\x00\x00" * 800,  # 50 ms: far shorter than the 8 s window
    np.random.default_rng(7).integers(-32768, 32767, 48000, dtype=np.int16).tobytes(),
    np.full(16000, 32767, dtype=np.int16).tobytes(),  # clipped DC
], ids=["empty", "odd", "short", "white-noise", "clipped"])
def test_garbage_audio_gets_a_probability(detector: SmartTurnDetector, pcm: bytes) -> None:
    p = detector.completion_probability(pcm, 16000)
    assert 0.0 <= p <= 1.0


def test_a_wrong_rate_is_refused(detector: SmartTurnDetector) -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        detector.completion_probability(b"\x00\x00" * 800, 8000)


def test_a_missing_model_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(EndOfTurnModelError, match="make install"):
        SmartTurnDetector(str(tmp_path / "nope.onnx"))


def test_a_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model" * 100)
    with pytest.raises(EndOfTurnModelError, match="failed to load"):
        SmartTurnDetector(str(bad))


def test_the_service_falls_back_to_vad_only(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(end_of_turn="model", eot_model_path=str(tmp_path / "nope.onnx"))
    with caplog.at_level(logging.ERROR):
        assert make_end_of_turn(settings) is None
    assert "falls back to VAD only" in caplog.text
    assert make_end_of_turn(Settings(end_of_turn="vad")) is None
    assert make_end_of_turn(Settings(end_of_turn="model")) is not None


def test_short_window_whisper_transcribes_real_speech() -> None:
    """The utterance encoded alone (voxbus_stt/whisper.py) hears what the 30 s window hears."""
    from voxbus_stt.whisper import WhisperSpeechToText

    stt = WhisperSpeechToText()
    text = stt.transcribe(clip("ls_test_4507-16021-0012.wav", pause_s=0.0), 16000)
    assert "halt on the way" in text.lower()
    assert stt.transcribe(b"\x00\x00" * 16000, 16000) == ""  # silence: no words
    assert stt.transcribe(b"", 16000) == ""


@pytest.mark.parametrize(("text", "trimmed"), [
    ("yes, yes, yes, yes, yes", "yes,"),
    ("I want to, I want to book a table", "I want to, I want to book a table"),
    ("the menu is great the menu is great", "the menu is great"),
    ("S S S S S S", "S"),
    ("we open at noon", "we open at noon"),
])
def test_decode_loops_are_cut(text: str, trimmed: str) -> None:
    from voxbus_stt.whisper import trim_loop

    assert trim_loop(text) == trimmed
