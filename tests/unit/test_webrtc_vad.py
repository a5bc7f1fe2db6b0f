"""The WebRTC VAD tells a voice from silence on real speech (not a tone: it ignores those)."""

from pathlib import Path

from voxbus_cli.caller import load_wav
from voxbus_stt.webrtc_vad import WebRtcVoiceActivity

SPEECH = Path(__file__).resolve().parents[2] / "speech"


def test_speech_and_silence() -> None:
    vad = WebRtcVoiceActivity(16000)
    step = vad.frame_samples * 2
    pcm = load_wav(next(iter(sorted(SPEECH.glob("*.wav")))))
    frames = [pcm[i:i + step] for i in range(0, len(pcm) - step, step)]
    voiced = sum(vad.speech_probability(f) for f in frames)
    assert 0.2 * len(frames) < voiced <= len(frames)
    vad.reset()
    assert vad.speech_probability(b"\x00" * step) == 0.0
