"""What `voxbus load` shows while it runs and leaves behind: a live line or table, a JSON
report and a PNG (latency distribution and the median per-stage waterfall)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from voxbus_cli.load import LoadConfig, LoadStats
from voxbus_common.metrics import STAGES


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no data), rounded to 0.1 ms."""
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 1)


def stage_values(stats: LoadStats, stage: str) -> list[float]:
    return [s["latency_ms"][stage] for s in stats.samples
            if not s["interrupted"] and s["latency_ms"].get(stage) is not None]


def summarize(stats: LoadStats) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for stage in (*STAGES, "voice_to_voice"):
        values = stage_values(stats, stage)
        stages[stage] = {"n": len(values), "p50": percentile(values, 50),
                         "p95": percentile(values, 95), "p99": percentile(values, 99)}
    return {"calls_connected": stats.connected, "calls_failed": stats.failed,
            "turns": stats.turns, "turns_interrupted": sum(s["interrupted"]
                                                           for s in stats.samples),
            "turns_skipped": stats.skipped, "timeouts": stats.timeouts,
            "errors": len(stats.errors), "stages_ms": stages}


def progress_line(stats: LoadStats) -> str:
    v2v = stage_values(stats, "voice_to_voice")
    return (f"{time.monotonic() - stats.started_at:6.1f} s  active {stats.active:4d}  "
            f"turns {stats.turns:5d}  timeouts {stats.timeouts}  errors {len(stats.errors)}  "
            f"voice-to-voice p50 {percentile(v2v, 50)} / p95 {percentile(v2v, 95)} ms")


def report(cfg: LoadConfig, stats: LoadStats, extra: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"benchmark": "load", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "config": {"url": cfg.url, "calls": cfg.calls, "duration_s": cfg.duration_s,
                       "ramp_s": cfg.ramp_s, "clips": len(cfg.clips)},
            "summary": summarize(stats), **(extra or {}),
            "errors": stats.errors[:50],
            "voice_to_voice_ms": stage_values(stats, "voice_to_voice")}


def write_report(doc: dict[str, Any], prefix: Path) -> tuple[Path, Path]:
    """`prefix`.json and `prefix`.png; returns both paths."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=2))
    png_path = prefix.with_suffix(".png")
    plot(doc, png_path)
    return json_path, png_path


def plot(doc: dict[str, Any], path: Path) -> None:
    """Left: voice-to-voice histogram with p50/p95/p99. Right: median per-stage waterfall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = doc["summary"]["stages_ms"]
    fig, (dist, fall) = plt.subplots(1, 2, figsize=(12, 4.5))
    values = doc["voice_to_voice_ms"]
    if values:
        dist.hist(values, bins=min(50, max(5, len(values) // 4)), color="#4477aa")
        for q, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            v = stages["voice_to_voice"][q]
            dist.axvline(v, color="#cc3311", linestyle=style, label=f"{q} {v:.0f} ms")
        dist.legend()
    dist.set_title(f"voice-to-voice, {doc['config']['calls']} calls, {len(values)} turns")
    dist.set_xlabel("ms")
    dist.set_ylabel("turns")
    start = 0.0
    for i, stage in enumerate(STAGES):
        width = stages[stage]["p50"] or 0.0
        fall.barh(i, width, left=start, color="#66ccee")
        fall.text(start + width, i, f" {width:.0f} ms", va="center", fontsize=8)
        start += width
    fall.set_yticks(range(len(STAGES)), [s.replace("_", " ") for s in STAGES], fontsize=7)
    fall.invert_yaxis()
    fall.set_title("median per-stage waterfall (ms after end of speech)")
    fall.set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
