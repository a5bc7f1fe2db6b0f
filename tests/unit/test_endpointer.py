from pathlib import Path

import pytest

from tests.fakes import EnergyVad, silence, tone
from voxbus_common.audio import resample_pcm16
from voxbus_stt.endpointer import (
    Endpointer,
    EndpointerConfig,
    EndpointEvent,
    SpeechEnded,
    SpeechOnset,
    SpeechStarted,
)

SPEECH = Path(__file__).resolve().parents[2] / "speech"


def run(ep: Endpointer, pcm: bytes) -> list[EndpointEvent]:
    events: list[EndpointEvent] = []
    for i in range(0, len(pcm), 640):
        events += ep.push(pcm[i : i + 640])
    return events


def test_one_utterance_with_pre_roll_and_hangover() -> None:
    ep = Endpointer(EnergyVad(), EndpointerConfig(min_speech_ms=96, hangover_ms=320,
                                                  pre_roll_ms=192))
    events = run(ep, silence(1024) + tone(992) + silence(1024))
    assert [type(e) for e in events] == [SpeechOnset, SpeechStarted, SpeechEnded]
    onset, start, end = events
    assert isinstance(onset, SpeechOnset) and onset.onset_ms == 1024 and onset.utterance_id == 1
    assert isinstance(start, SpeechStarted) and isinstance(end, SpeechEnded)
    assert start.start_ms == 1024
    assert end.end_ms == 1024 + 992
    # pre-roll (192 ms) + speech + hangover windows are all in the utterance audio
    assert len(end.pcm) // 32 >= 192 + 992 + 320 - 32


def test_short_noise_is_not_speech() -> None:
    ep = Endpointer(EnergyVad(), EndpointerConfig(min_speech_ms=160, onset_ms=64))
    events = run(ep, silence(500) + tone(64) + silence(800))
    assert all(isinstance(e, SpeechOnset) for e in events)  # tentative at most
    fresh = Endpointer(EnergyVad(), EndpointerConfig(min_speech_ms=160, onset_ms=64))
    assert run(fresh, tone(20) + silence(500)) == []


def test_flush_closes_an_open_utterance() -> None:
    ep = Endpointer(EnergyVad(), EndpointerConfig(min_speech_ms=96))
    events = run(ep, tone(600))
    assert [type(e) for e in events] == [SpeechOnset, SpeechStarted] and ep.in_speech
    end = ep.flush()
    assert end is not None and end.utterance_id == 1
    assert ep.flush() is None


def test_overlong_utterance_is_split() -> None:
    ep = Endpointer(EnergyVad(), EndpointerConfig(min_speech_ms=96, max_utterance_ms=2000))
    events = run(ep, tone(5000))
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 2 and all(len(e.pcm) <= 2100 * 32 for e in ends)


@pytest.mark.parametrize("clip", ["ls_test_4507-16021-0012.wav", "osr_us0034_8k_s01.wav"])
def test_silero_finds_speech_in_real_clips(clip: str) -> None:
    import soundfile as sf

    from voxbus_stt.silero import SileroVoiceActivity

    data, rate = sf.read(str(SPEECH / clip), dtype="int16")
    pcm = resample_pcm16(data.tobytes(), rate, 16000) + silence(1000)
    ep = Endpointer(SileroVoiceActivity(16000), EndpointerConfig())
    events = run(ep, pcm)
    assert any(isinstance(e, SpeechStarted) for e in events)
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert ends, "the utterance must end within the trailing second of silence"
    assert 0 < ends[0].start_ms < ends[-1].end_ms <= len(pcm) // 32
