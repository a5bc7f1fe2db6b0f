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
    SpeechResumed,
    SpeechStarted,
    TurnCheck,
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


# -- the `model` end-of-turn policy ------------------------------------------------------------


def model_endpointer(**overrides: int | float) -> Endpointer:
    cfg = EndpointerConfig(min_speech_ms=96, pre_roll_ms=192, policy="model", ask_after_ms=160,
                           max_hold_ms=1000, hold_ms=700, hangover_ms=320, resume_after_ms=96)
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return Endpointer(EnergyVad(), cfg)


def test_model_policy_asks_at_a_pause_and_a_complete_verdict_ends_the_turn() -> None:
    ep = model_endpointer()
    events = run(ep, silence(320) + tone(992) + silence(192))
    checks = [e for e in events if isinstance(e, TurnCheck)]
    assert len(checks) == 1 and not any(isinstance(e, SpeechEnded) for e in events)
    check = checks[0]
    assert check.key == (1, 320 + 992) and len(check.pcm) // 32 >= 992 + 160
    end = ep.verdict(check.key, 0.93)
    assert isinstance(end, SpeechEnded)
    assert (end.reason, end.probability, end.end_ms) == ("model", 0.93, 320 + 992)
    assert not ep.in_speech and ep.verdict(check.key, 0.93) is None


def test_model_policy_holds_an_incomplete_turn_until_speech_resumes() -> None:
    """A number dictated in groups: the pause is longer than the VAD hangover."""
    ep = model_endpointer()
    events = run(ep, tone(992) + silence(608))
    check = next(e for e in events if isinstance(e, TurnCheck))
    assert ep.verdict(check.key, 0.04) is None
    events = run(ep, silence(64) + tone(992) + silence(192))
    assert [type(e) for e in events] == [SpeechResumed, TurnCheck]
    resumed = events[0]
    assert isinstance(resumed, SpeechResumed) and resumed.paused_ms >= 608
    assert ep.verdict(check.key, 0.99) is None  # a verdict on the old pause is stale
    end = ep.verdict(events[1].key, 0.99)  # type: ignore[union-attr]
    assert isinstance(end, SpeechEnded) and end.start_ms == 0
    assert end.end_ms == 992 + 672 + 992  # one turn across the pause


def test_model_policy_falls_back_to_the_longest_hold() -> None:
    """A caller who goes silent mid-number is answered after max_hold_ms, never stuck."""
    ep = model_endpointer(max_hold_ms=1000, hold_ms=700)
    events = run(ep, tone(992) + silence(500))
    check = next(e for e in events if isinstance(e, TurnCheck))
    assert ep.verdict(check.key, 0.1) is None  # the audio model's "not yet": the short hold
    events += run(ep, silence(250))
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and ends[0].reason == "max_hold" and ends[0].probability == 0.1
    # words that cannot end a turn hold it longer
    events = run(ep, tone(992) + silence(500))
    check = next(e for e in events if isinstance(e, TurnCheck))
    assert ep.verdict(check.key, 0.99, "incomplete") is None
    assert not any(isinstance(e, SpeechEnded) for e in run(ep, silence(400)))
    assert [e.reason for e in run(ep, silence(200)) if isinstance(e, SpeechEnded)] == [
        "max_hold"]


def test_model_policy_without_a_verdict_uses_the_vad_hangover() -> None:
    """The model failed on this pause: the VAD rules it (320 ms), not the long hold."""
    ep = model_endpointer()
    events = run(ep, tone(992) + silence(192))
    check = next(e for e in events if isinstance(e, TurnCheck))
    assert ep.verdict(check.key, None) is None  # 192 ms < 320 ms hangover
    ends = [e for e in run(ep, silence(160)) if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and ends[0].reason == "vad"


def test_a_short_pause_is_not_announced_as_resumed() -> None:
    ep = model_endpointer()
    events = run(ep, tone(992) + silence(64) + tone(320))
    assert not any(isinstance(e, (SpeechResumed, TurnCheck)) for e in events)


def test_vad_policy_never_asks() -> None:
    ep = Endpointer(EnergyVad(), EndpointerConfig(min_speech_ms=96, hangover_ms=320))
    events = run(ep, tone(992) + silence(704) + tone(500) + silence(400))
    assert not any(isinstance(e, TurnCheck) for e in events)
    assert [e.reason for e in events if isinstance(e, SpeechEnded)] == ["vad", "vad"]


def test_words_overrule_the_audio_model() -> None:
    """ "four one five," sounds finished to the audio model; the words say it is not. A whole
    number ends the turn even when the audio sounds unfinished."""
    ep = model_endpointer()
    check = next(e for e in run(ep, tone(992) + silence(192)) if isinstance(e, TurnCheck))
    assert ep.verdict(check.key, 0.97, "incomplete") is None and ep.in_speech
    check = next(e for e in run(ep, silence(96) + tone(500) + silence(192))
                 if isinstance(e, TurnCheck))
    end = ep.verdict(check.key, 0.03, "complete")
    assert isinstance(end, SpeechEnded) and end.reason == "words"


def test_a_complete_turn_waits_for_the_minimum_silence() -> None:
    """A breath inside a sentence ("a severe storm … tore down the barn") sounds finished to
    the model at 160 ms: the turn ends only at `min_silence_ms`, and speech coming back
    before then keeps it one turn."""
    ep = model_endpointer(min_silence_ms=288)
    check = next(e for e in run(ep, tone(992) + silence(192)) if isinstance(e, TurnCheck))
    assert ep.verdict(check.key, 0.95) is None and ep.in_speech
    events = run(ep, silence(64) + tone(500) + silence(192))
    assert [type(e) for e in events] == [SpeechResumed, TurnCheck]
    again = events[1]
    assert isinstance(again, TurnCheck) and ep.verdict(again.key, 0.9, "complete") is None
    ends = [e for e in run(ep, silence(128)) if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and ends[0].reason == "words" and ends[0].start_ms == 0
    # a verdict that comes after the minimum silence ends the turn at once
    check = next(e for e in run(ep, tone(992) + silence(320)) if isinstance(e, TurnCheck))
    end = ep.verdict(check.key, 0.95)
    assert isinstance(end, SpeechEnded) and end.reason == "model"
