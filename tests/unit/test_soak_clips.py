"""The soak's lost-turn count: a clip heard late (a take-over replayed it) is not lost."""

from bench.soak_calls import TurnLog


def speech_start(log: TurnLog, call: int, uid: int, at: float, audio_ms: int | None) -> None:
    event = {"type": "vad", "event": "speech_start", "utterance": uid}
    if audio_ms is not None:
        event["audio_offset_ms"] = audio_ms
    log.record(call, event, at)


def two_clips(log: TurnLog) -> None:
    log.clips[0] = [10.0, 14.0]  # the second clip began 4 s after the first
    log.clip_audio_ms[0] = [1000, 5000]


def test_a_clip_heard_after_the_next_began_is_heard_by_its_audio_position() -> None:
    log = TurnLog(hangover_ms=500)
    two_clips(log)
    speech_start(log, 0, 1, at=14.5, audio_ms=1300)  # the replay of clip 1, 4.5 s late
    speech_start(log, 0, 2, at=14.6, audio_ms=5200)
    assert log.silent_clips() == []


def test_a_clip_no_speech_start_fell_in_is_silent_until_the_next_heard_one() -> None:
    log = TurnLog(hangover_ms=500)
    two_clips(log)
    speech_start(log, 0, 2, at=14.6, audio_ms=5200)
    assert log.silent_clips() == [(0, 10.0, 14.0)]


def test_without_audio_positions_arrival_times_decide() -> None:
    log = TurnLog(hangover_ms=500)
    two_clips(log)
    speech_start(log, 0, 1, at=14.5, audio_ms=None)  # late: counted in the second clip
    assert log.silent_clips() == [(0, 10.0, 14.0)]


def test_fitted_growth_sees_through_a_swing_at_the_endpoints() -> None:
    from bench.soak_report import fitted_growth_pct
    swings = [(10.0 * i, mb) for i, mb in enumerate([100.0, 104, 96, 100, 104, 96, 104])]
    assert abs(fitted_growth_pct(swings) or 0.0) < 1.0  # the endpoints say +4 %
    climbing = [(float(t), 100.0 + t / 10) for t in range(0, 50, 10)]
    assert fitted_growth_pct(climbing) == 3.92  # 4 MB on a mean of 102
    assert fitted_growth_pct([(0.0, 1.0), (1.0, None)]) is None
