from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import tone
from voxbus_cli.caller import CallerError, load_wav
from voxbus_gateway.edges.pcm_ws import InvalidAudio, check_pcm_payload


def test_pcm_payload_checks() -> None:
    check_pcm_payload(b"\x00" * 640, 16000)
    with pytest.raises(InvalidAudio, match="whole 16-bit samples"):
        check_pcm_payload(b"\x00" * 641, 16000)
    with pytest.raises(InvalidAudio, match="container"):
        check_pcm_payload(b"RIFF" + b"\x00" * 100, 16000)
    with pytest.raises(InvalidAudio, match="longer than"):
        check_pcm_payload(b"\x00" * 40000, 16000)


def test_load_wav_resamples_and_downmixes(tmp_path: Path) -> None:
    stereo = np.stack([np.frombuffer(tone(500, rate=8000), dtype="<i2")] * 2, axis=1)
    path = tmp_path / "s.wav"
    sf.write(str(path), stereo, 8000, subtype="PCM_16")
    pcm = load_wav(path)
    assert abs(len(pcm) // 2 - 8000) <= 16


def test_load_wav_refuses_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(CallerError, match="not a readable audio file"):
        load_wav(bad)
    with pytest.raises(CallerError, match="no such file"):
        load_wav(tmp_path / "missing.wav")
