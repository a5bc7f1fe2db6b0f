"""Bus overhead and capacity: the five real services and a real nats-server with instant
test providers (voxbus_testkit.instant), N concurrent synthetic callers streaming real speech in
real time through `voxbus load`'s generator. With no model time left, what a turn costs
beyond the VAD hangover is the platform's own overhead.

    python -m bench.capacity [--levels 10,50,100,150,200,400] [--duration 20]

A fresh stack per level keeps memory figures honest (Python never returns its heap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.hist import histogram_quantiles, parse_histogram
from voxbus_cli.embedded import free_port
from voxbus_cli.load import LoadConfig, LoadStats, load_clips, run_fast, run_load
from voxbus_cli.load_report import percentile, stage_values, summarize
from voxbus_cli.stack import Stack
from voxbus_common.config import Settings
from voxbus_testkit.instant import instant_env

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
TARGET_P50_MS, TARGET_P99_MS = 10.0, 25.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def platform_pids(stack: Stack) -> dict[str, int]:
    pids = {name: p.pid for name, p in stack.service_procs.items()}
    others = [p for p in stack.procs if p not in stack.service_procs.values()]
    if others:
        pids["nats"] = others[0].pid
    return pids


def sample(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    return {name: (cpu_seconds(pid), rss_mb(pid)) for name, pid in pids.items()}


def hop_quantiles(stack: Stack) -> dict[str, dict[str, float | None]]:
    """Per-message bus hop p50/p99 (ms) from every service's histogram, merged."""
    buckets: dict[str, dict[float, float]] = {}
    for port in stack.metrics_ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for message, counts in parse_histogram(text, "voxbus_bus_hop_seconds", "message").items():
            merged = buckets.setdefault(message, {})
            for le, n in counts.items():
                merged[le] = merged.get(le, 0.0) + n
    return {m: histogram_quantiles(c, (50, 99)) for m, c in sorted(buckets.items())}


async def run_level(stack: Stack, calls: int, duration_s: float, clips: list[bytes]
                    ) -> dict[str, Any]:
    pids = platform_pids(stack)
    ramp = max(3.0, calls / 40)
    cfg = LoadConfig(url=stack.gateway_url, calls=calls, duration_s=duration_s, clips=clips,
                     ramp_s=ramp)
    stats = LoadStats()
    idle = sample(pids)
    load = asyncio.create_task(run_load(cfg, stats))
    await asyncio.sleep(ramp)  # sampling times, not synchronisation
    before, gen_before, t0 = sample(pids), time.process_time(), time.monotonic()
    await asyncio.sleep(duration_s)
    after, gen_after, t1 = sample(pids), time.process_time(), time.monotonic()
    await load
    wall = t1 - t0
    cpu = {n: round((after[n][0] - before[n][0]) / wall * 100, 1) for n in pids}
    rss_delta = sum(after[n][1] - idle[n][1] for n in pids)
    hangover = Settings().vad_hangover_ms
    overhead = [v - hangover for v in stage_values(stats, "voice_to_voice")]
    return {
        "calls": calls, "connected": stats.connected, "ramp_s": ramp, "duration_s": duration_s,
        "summary": summarize(stats),
        "overhead_ms": {"p50": percentile(overhead, 50), "p99": percentile(overhead, 99),
                        "n": len(overhead)},
        "bus_hop_ms": hop_quantiles(stack),
        "cpu_percent": cpu, "cpu_percent_total": round(sum(cpu.values()), 1),
        "cpu_ms_per_call_second": round(sum(cpu.values()) * 10 / calls, 2),
        "load_generator_cpu_percent": round((gen_after - gen_before) / wall * 100, 1),
        "rss_mb": {n: round(after[n][1], 1) for n in pids},
        "memory_mb_per_call": round(rss_delta / calls, 3),
        "errors": stats.errors[:5],
    }


def run_all(levels: list[int], duration_s: float) -> list[dict[str, Any]]:
    clips = load_clips(ROOT / "speech", limit=8)
    env = instant_env()
    env.update({"PYTHONPATH": str(ROOT), "VOXBUS_LOG_LEVEL": "WARNING",
                "VOXBUS_STT_MAX_CALLS": str(max(levels) + 10),
                "VOXBUS_LLM_CONCURRENCY": "64", "VOXBUS_TTS_CONCURRENCY": "64"})
    results = []
    for calls in levels:
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(workdir=Path(tmp), gateway_port=free_port(), env=env,
                          log_dir=Path(tmp) / "logs")
            with stack.running():
                level = run_fast(run_level(stack, calls, duration_s, clips))
        results.append(level)
        o = level["overhead_ms"]
        print(f"{calls:4d} calls: overhead p50 {o['p50']} / p99 {o['p99']} ms over {o['n']} "
              f"turns, CPU {level['cpu_percent_total']}% ({level['cpu_ms_per_call_second']} "
              f"ms/call·s), {level['memory_mb_per_call']} MB/call, "
              f"errors {level['summary']['errors']}, timeouts {level['summary']['timeouts']}",
              flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="10,50,100,150,200,400")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    started = time.time()
    results = run_all(levels, args.duration)
    within = [r["calls"] for r in results
              if r["overhead_ms"]["p99"] is not None and r["overhead_ms"]["p99"] <= TARGET_P99_MS
              and r["summary"]["timeouts"] == 0 and r["connected"] == r["calls"]]
    report = {
        "benchmark": "capacity",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "providers": "voxbus_testkit.instant (instant STT/LLM/TTS), WebRTC VAD",
        "overhead": "voice-to-voice minus the VAD hangover "
                    f"({Settings().vad_hangover_ms} ms); models take ~0 ms",
        "targets_ms": {"p50": TARGET_P50_MS, "p99": TARGET_P99_MS, "at_calls": 200},
        "largest_calls_within_p99_target": max(within) if within else None,
        "levels": results,
    }
    out = args.out or ROOT / "bench" / "results" / f"capacity-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"largest N with p99 overhead <= {TARGET_P99_MS} ms: "
          f"{report['largest_calls_within_p99_target']}; written to {out}")


if __name__ == "__main__":
    main()
