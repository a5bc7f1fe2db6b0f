"""The soak benchmark's figures from what a phase recorded (bench/soak.py): resident memory per
service over time and its growth after the warm-up minute, p99 overhead per minute and its
drift, lost turns, and what each worker kill did to the turns around it. Also the PNG and the
printed summary."""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.soak_calls import TurnLog, Utterance
from voxbus_cli.load_report import percentile

WARMUP_S = 60.0  # the first minute: callers joining, caches and heaps filling
RSS_TARGET_PCT = 5.0


def service_of(slot: str) -> str:
    return slot.rsplit("-", 1)[0]


def rss_by_service(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each sample's per-replica RSS summed per service (stt-1 + stt-2 -> stt)."""
    out = []
    for s in series:
        total: dict[str, float] = {}
        for slot, mb in s["rss_mb"].items():
            total[service_of(slot)] = total.get(service_of(slot), 0.0) + mb
        out.append({"t": s["t"], "rss_mb": {k: round(v, 1) for k, v in total.items()}})
    return out


def rss_growth(series: list[dict[str, Any]], end_s: float) -> dict[str, dict[str, Any]]:
    """Per key: the first sample after the warm-up minute vs the last before the load stops."""
    after = [s for s in series if WARMUP_S <= s["t"] <= end_s + 1.0]
    if len(after) < 2:
        return {}
    first, last = after[0], after[-1]
    tail = next(s for s in after if s["t"] >= last["t"] - 60.0)  # still growing at the end?
    # The second half alone: bounded state (replay windows, per-call logs) has filled by
    # then, so growth there is what would go on (a leak), not a fill.
    half = next(s for s in after if s["t"] >= (first["t"] + last["t"]) / 2)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(first["rss_mb"]):
        a, b, c = first["rss_mb"][key], last["rss_mb"].get(key), tail["rss_mb"].get(key)
        h = half["rss_mb"].get(key)
        if not a or b is None:
            continue
        pct = round((b - a) / a * 100, 1)
        second_half = None if not h or last["t"] <= half["t"] else round((b - h) / h * 100, 1)
        fitted = fitted_growth_pct([(x["t"], x["rss_mb"].get(key)) for x in after
                                    if x["t"] >= half["t"]])
        slope = (None if c is None or last["t"] <= tail["t"]
                 else round((b - c) / (last["t"] - tail["t"]) * 60, 2))
        out[key] = {"minute_1_mb": round(a, 1), "end_mb": round(b, 1), "growth_pct": pct,
                    "within_target": pct <= RSS_TARGET_PCT or key == "loadgen",
                    "last_minute_mb_per_min": slope, "second_half_pct": second_half,
                    "second_half_fit_pct": fitted,
                    "from_s": first["t"], "to_s": last["t"]}
    return out


def fitted_growth_pct(points: Sequence[tuple[float, float | None]]) -> float | None:
    """Growth over the points' span by a least-squares line, in % of their mean: two
    endpoint samples of a process whose RSS swings a few MB (queued frames, arenas) can
    read as growth or shrinkage; the fitted line over every sample is what goes on."""
    pts = [(t, v) for t, v in points if v is not None]
    if len(pts) < 3 or len({t for t, _ in pts}) < 2:
        return None
    mv = statistics.fmean(v for _, v in pts)
    if not mv:
        return None
    slope = statistics.linear_regression([t for t, _ in pts], [v for _, v in pts]).slope
    return round(slope * (pts[-1][0] - pts[0][0]) / mv * 100, 2)


def minute_of(t: float, t0: float, minutes: int) -> int:
    return min(max(0, int((t - t0) // 60)), minutes - 1)


Silent = list[tuple[int, float, float]]  # TurnLog.silent_clips()


def per_minute(log: TurnLog, t0: float, minutes: int, silent: Silent) -> list[dict[str, Any]]:
    """p50/p99 overhead of the turns that finished in each minute; lost turns by start
    (utterances never answered and clips never heard)."""
    overheads: list[list[float]] = [[] for _ in range(minutes)]
    for t, overhead in log.turns:
        overheads[minute_of(t, t0, minutes)].append(overhead)
    lost, errors = [0] * minutes, [0] * minutes
    for u in log.utterances.values():
        if u.lost:
            lost[minute_of(u.start_t, t0, minutes)] += 1
    for _, start, _ in silent:
        lost[minute_of(start, t0, minutes)] += 1
    for t, _, _ in log.errors:
        errors[minute_of(t, t0, minutes)] += 1
    stages: list[dict[str, list[float]]] = [{} for _ in range(minutes)]
    for t, by_stage in log.stages:  # which stage a drift comes from
        for stage, ms in by_stage.items():
            stages[minute_of(t, t0, minutes)].setdefault(stage, []).append(ms)
    return [{"minute": m + 1, "turns": len(v), "overhead_p50_ms": percentile(v, 50),
             "overhead_p99_ms": percentile(v, 99), "lost_turns": lost[m], "errors": errors[m],
             "stage_p99_ms": {k: percentile(x, 99) for k, x in sorted(stages[m].items())}}
            for m, v in enumerate(overheads)]


def drift(minutes: list[dict[str, Any]], first: int) -> float | None:
    if len(minutes) <= first + 1:
        return None
    a, b = minutes[first]["overhead_p99_ms"], minutes[-1]["overhead_p99_ms"]
    return None if a is None or b is None else round(b - a, 1)


def resolved_at(u: Utterance) -> float:
    if u.lost:
        return math.inf
    return u.done_t or u.final_t or u.end_t or u.start_t


# The gateway's line for each call it moved off a dead STT replica (stt_watch.py).
MOVED = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) .* call_id=load-(\d+)-\S+ .*"
                   r"(STT call handed to a survivor|call re-announced)")


def moved_calls(gateway_log: Path, kills: list[dict[str, Any]]) -> None:
    """Adds to each STT kill the callers (load indexes) whose calls the gateway moved to
    a survivor after it: the turns a kill can slow, measured apart from the rest."""
    stt = [k for k in kills if k["service"] == "stt"]
    for kill in stt:
        kill["moved"] = set()
    if not stt or not gateway_log.exists():
        return

    def day_s(t: float) -> float:
        lt = time.localtime(t)
        return lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + t % 1

    starts = [(day_s(k["t_wall"]), k) for k in stt]
    for line in gateway_log.read_text(errors="replace").splitlines():
        if (m := MOVED.match(line)) is None:
            continue
        h, mi, sec, ms, call = (int(x) for x in m.groups()[:5])
        at = h * 3600 + mi * 60 + sec + ms / 1000
        before = [k for t, k in starts if t <= at + 0.01]
        if before:
            before[-1]["moved"].add(call)


def kill_effects(log: TurnLog, kills: list[dict[str, Any]], window_s: float,
                 baseline: dict[str, float | None], silent: Silent) -> None:
    """Adds to each kill: the utterances open at the kill or started within `window_s` after
    it; which of them were affected (lost, or overhead above the no-kill p99); the worst;
    and the clips spoken from this kill to the next that the platform never heard."""
    p50, p99 = baseline.get("p50"), baseline.get("p99")
    for i, kill in enumerate(kills):
        t = kill["t_mono"]
        upto = kills[i + 1]["t_mono"] if i + 1 < len(kills) else math.inf
        unheard = [(c, a, b) for c, a, b in silent if t <= a < upto]
        near = [u for u in log.utterances.values()
                if u.start_t <= t + window_s and resolved_at(u) >= t]
        over = [u.overhead_ms for u in near if u.overhead_ms is not None
                and not u.interrupted]
        slow = [o for o in over if p99 is not None and o > p99]
        lost = [u for u in near if u.lost]
        worst = max(over, default=None)
        phantom = {c for at, c in log.phantom_vad if t <= at < upto}
        reprompted = {c for at, c in log.reprompts if t <= at < upto}
        outcomes = Counter(u.outcome for u in lost)
        if unheard:
            outcomes["unheard_clip"] = len(unheard)
        kill.update({
            "turns_in_window": len(near),
            "affected_turns": len(slow) + len(lost) + len(unheard),
            "lost_turns": len(lost) + len(unheard), "lost_outcomes": dict(outcomes),
            "calls_deafened": len({c for c, _, _ in unheard}),
            "calls_with_replayed_vad": len(phantom), "calls_reprompted": len(reprompted),
            "agent_audio_paused": sum(t <= at < upto for at, _ in log.barge_ins),
            "longest_deafness_s": round(max((b - a for _, a, b in unheard), default=0.0), 1),
            "max_overhead_ms": None if worst is None else round(worst, 1),
            "max_added_latency_ms": None if worst is None or p50 is None
            else round(worst - p50, 1)})
        if "moved" in kill:  # an STT kill: the calls moved to survivors, on their own
            kill.update(moved_effects(near, kill.pop("moved"), p50))


def pooled_failover(kills: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Every moved call's turn near an STT kill, pooled: the failover target's figure."""
    added = [a for k in kills for a in k.get("moved_added_all", [])]
    if not any("moved_calls" in k for k in kills):
        return None
    return {"p50": percentile(added, 50), "p95": percentile(added, 95),
            "max": max(added, default=None), "n": len(added)}


def moved_effects(near: list[Utterance], moved: set[int], p50: float | None) -> dict[str, Any]:
    """Added latency (overhead minus the no-kill p50) of the moved calls' turns near a kill."""
    turns = [u for u in near if u.call in moved]
    added = [u.overhead_ms - (p50 or 0.0) for u in turns
             if u.overhead_ms is not None and not u.interrupted]
    return {"moved_calls": len(moved), "moved_turns": len(turns),
            "moved_lost": sum(u.lost for u in turns),
            "moved_added_ms": {"p50": percentile(added, 50), "p95": percentile(added, 95),
                               "max": round(max(added), 1) if added else None},
            "moved_added_all": [round(a, 1) for a in added]}


def log_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.glob("*.log")}


def scan_logs(folder: Path, upto: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Warnings, errors and tracebacks per service log, with the commonest messages; only
    what was logged while the load ran (`upto`: each log's size then), not the shutdown."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.log")):
        levels: Counter[str] = Counter()
        messages: Counter[str] = Counter()
        with path.open("rb") as f:
            text = f.read(upto.get(path.name, 0)).decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("Traceback"):
                levels["traceback"] += 1
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[1] in ("WARNING", "ERROR", "CRITICAL"):
                levels[parts[1].lower()] += 1
                text = re.sub(r"(call_id|turn)=\S+ ?", "", parts[3])
                messages[re.sub(r"\d+", "#", text)[:160]] += 1
        if levels:
            out[path.stem] = {**levels, "top": [[n, m] for m, n in messages.most_common(5)]}
    return out


def print_phase(name: str, phase: dict[str, Any]) -> None:
    s = phase["summary"]
    print(f"\n== {name}: {phase['calls']} calls, {phase['duration_s']:.0f} s "
          f"(+{phase['ramp_s']:.0f} s ramp); {s['turns']} turns, {phase['lost_turns']} lost, "
          f"{s['timeouts']} timeouts, {s['errors']} errors, {s['calls_failed']} calls failed; "
          f"{phase['replayed_vad_events']} replayed VAD events, {phase['idle_reprompts']} "
          f"idle re-prompts, {phase['agent_audio_paused']} agent audio pauses")
    cpu = phase["cpu_pct_mean"]
    print(f"mean CPU (% of one core): platform {cpu['platform']}, load generator "
          f"{cpu['loadgen']}, other processes on the machine {cpu['others']}")
    print("RSS per service, first sample after the warm-up minute -> last (MB, growth):")
    for svc, g in phase["rss_growth"].items():
        mark = "" if g["within_target"] else f"  > {RSS_TARGET_PCT:.0f}%"
        print(f"  {svc:10s} {g['minute_1_mb']:8.1f} -> {g['end_mb']:8.1f}  "
              f"{g['growth_pct']:+5.1f}%  (second half {g.get('second_half_pct')}%, "
              f"fitted {g.get('second_half_fit_pct')}%, "
              f"last minute {g['last_minute_mb_per_min']} MB/min)"
              f"{mark}{'  (the generator: keeps every turn)' if svc == 'loadgen' else ''}")
    print("overhead p99 per minute (ms): " + ", ".join(
        f"{m['minute']}: {m['overhead_p99_ms']}" for m in phase["per_minute"]))
    for m in phase["per_minute"]:
        print(f"  minute {m['minute']:2d} p99 by stage (ms): " + ", ".join(
            f"{k} {v}" for k, v in m.get("stage_p99_ms", {}).items()))
    print(f"p99 drift (last - first minute): {phase['p99_drift_ms']} ms; after the warm-up "
          f"(last - minute 2): {phase['p99_drift_after_warmup_ms']} ms")
    for k in phase.get("kills", []):
        print(f"  kill {k['slot']:9s} at {k['t_s']:6.1f} s: back in {k['ready_after_s']} s; "
              f"{k['turns_in_window']} turns near, {k['affected_turns']} affected, "
              f"{k['lost_turns']} lost, max overhead {k['max_overhead_ms']} ms "
              f"(+{k['max_added_latency_ms']} ms); {k['calls_deafened']} calls went deaf "
              f"(longest {k['longest_deafness_s']} s); {k['calls_with_replayed_vad']} calls got "
              f"replayed VAD events, {k['calls_reprompted']} an idle re-prompt")
        if "moved_calls" in k:
            a = k["moved_added_ms"]
            print(f"    {k['moved_calls']} calls moved to survivors, {k['moved_turns']} of "
                  f"their turns near: added p50 {a['p50']} / p95 {a['p95']} / max {a['max']} "
                  f"ms, {k['moved_lost']} lost")
    if (pooled := phase.get("stt_failover_added_ms")) is not None:
        print(f"  STT kills, every moved call's turn near a kill: added p50 {pooled['p50']} / "
              f"p95 {pooled['p95']} / max {pooled['max']} ms over {pooled['n']} turns")


def plot(report: dict[str, Any], path: Path) -> None:
    """Top: RSS per service over time; bottom: p99 overhead per minute (kills marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = report["phases"]
    fig, axes = plt.subplots(2, len(phases), figsize=(6 * len(phases), 7), squeeze=False)
    for col, (name, phase) in enumerate(phases.items()):
        rss, lat = axes[0][col], axes[1][col]
        series = phase["rss_by_service"]
        for svc in sorted(series[0]["rss_mb"]) if series else []:
            rss.plot([s["t"] / 60 for s in series], [s["rss_mb"].get(svc) for s in series],
                     label=svc)
        rss.axvline(WARMUP_S / 60, color="grey", linestyle=":")
        rss.set_title(f"{name}: RSS per service (MB)")
        rss.set_xlabel("minutes")
        rss.legend(fontsize=7)
        mins = phase["per_minute"]
        lat.plot([m["minute"] - 0.5 for m in mins], [m["overhead_p99_ms"] for m in mins],
                 marker="o", label="p99")
        lat.plot([m["minute"] - 0.5 for m in mins], [m["overhead_p50_ms"] for m in mins],
                 marker=".", label="p50")
        for k in phase.get("kills", []):
            lat.axvline(k["t_s"] / 60, color="#cc3311", alpha=0.4)
            lat.text(k["t_s"] / 60, 0.02, k["slot"], rotation=90, fontsize=7, va="bottom",
                     transform=lat.get_xaxis_transform())
        lat.set_title(f"{name}: overhead per minute (ms)")
        lat.set_xlabel("minutes")
        lat.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
