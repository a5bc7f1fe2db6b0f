"""The synthetic caller's turn-taking and the load report, without a network."""

import json
from pathlib import Path

from voxbus_cli.load import FRAME, SILENCE, LoadConfig, LoadStats, SyntheticCaller
from voxbus_cli.load_report import report, summarize, write_report


def caller(clip_frames: int = 3) -> tuple[SyntheticCaller, LoadStats]:
    cfg = LoadConfig(url="ws://x", calls=1, duration_s=1, clips=[b"\x01\x00" * (FRAME // 2)
                                                                   * clip_frames],
                     turn_timeout_s=10.0)
    stats = LoadStats()
    return SyntheticCaller(0, cfg, stats, stop_at=100.0), stats


def turn(v2v: float, interrupted: bool = False) -> dict[str, object]:
    return {"type": "turn", "interrupted": interrupted,
            "latency_ms": {"voice_to_voice": v2v, "end_of_speech_to_final_transcript": 300.0}}


def test_speaks_then_waits_for_the_agent_then_speaks_again() -> None:
    c, stats = caller()
    frames = [c.next_frame(0.0) for _ in range(3)]
    assert all(f is not None and f != SILENCE for f in frames)
    c.on_event({"type": "vad", "event": "speech_start"})
    c.on_event({"type": "vad", "event": "speech_end"})
    assert c.next_frame(5.0) == SILENCE  # the agent has not answered
    c.on_event(turn(320.0))
    assert c.next_frame(5.1) == SILENCE  # settled: next tick starts the next clip
    assert c.next_frame(5.12) != SILENCE
    assert stats.turns == 1 and stats.timeouts == 0


def test_a_silent_agent_is_a_timeout_and_the_call_goes_on() -> None:
    c, stats = caller(1)
    c.next_frame(0.0)
    c.on_event({"type": "vad", "event": "speech_end"})
    assert c.next_frame(11.0) == SILENCE
    assert stats.timeouts == 1
    assert c.next_frame(11.02) != SILENCE


def test_hangs_up_after_the_duration_once_settled() -> None:
    c, _ = caller(1)
    c.stop_at = 2.0
    c.next_frame(0.0)
    assert c.next_frame(3.5) is None


def test_report_summary_and_files(tmp_path: Path) -> None:
    c, stats = caller()
    for v in (320.0, 330.0, 340.0):
        c.on_event(turn(v))
    c.on_event(turn(900.0, interrupted=True))  # interrupted turns have no voice-to-voice
    s = summarize(stats)
    assert s["turns"] == 4 and s["turns_interrupted"] == 1
    assert s["stages_ms"]["voice_to_voice"] == {"n": 3, "p50": 330.0, "p95": 340.0,
                                                "p99": 340.0}
    json_path, png_path = write_report(report(c.cfg, stats), tmp_path / "r")
    assert json.loads(json_path.read_text())["summary"]["turns"] == 4
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
