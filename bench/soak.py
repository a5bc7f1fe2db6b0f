"""Soak: the five real services and nats-server with instant providers (voxbus_testkit.instant),
extra replicas (2 STT, 2 LLM, 2 TTS, 2 memory, 1 gateway) and N synthetic callers streaming
real speech in real time through `voxbus load`'s generator for many minutes.

Phase "steady": no faults. Resident memory of every process every 10 s (growth after the
warm-up minute, target <= 5%), p99 overhead per minute and its drift, errors, lost turns.
Phase "kills": the same, with a worker SIGKILLed every minute (rotating over the STT, LLM,
TTS and memory replicas) and started again at once, so capacity stays; per kill: the turns
around it, those affected (lost, or slower than the steady p99) and the worst added latency.

    python -m bench.soak [--minutes 10] [--calls 200] [--kill-every 60] [--phases steady,kills]
    python -m bench.soak --minutes 5 --phases kills --kill-order stt --replicas stt=3

The second form is STT failover: only STT replicas die, and the calls the gateway moved to
survivors are measured apart (their turns' added latency). Samples carry each process's CPU.

~22 min with the defaults (two 10-minute phases); results in bench/results/soak-YYYYMMDD.*.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.capacity import cpu_seconds, rss_mb
from bench.soak_calls import TurnLog, run_traced_load
from bench.soak_report import (
    RSS_TARGET_PCT,
    WARMUP_S,
    drift,
    kill_effects,
    log_sizes,
    moved_calls,
    per_minute,
    plot,
    pooled_failover,
    print_phase,
    rss_by_service,
    rss_growth,
    scan_logs,
    service_of,
)
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port, spawn, stop_all
from voxbus_cli.load import LoadConfig, LoadStats, run_fast
from voxbus_cli.load_report import percentile, summarize
from voxbus_cli.stack import Stack, ping_services
from voxbus_common.config import Settings
from voxbus_testkit.instant import instant_env

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = {"memory": 2, "llm": 2, "tts": 2, "stt": 2, "gateway": 1}
KILL_ORDER = ("stt", "llm", "tts", "memory")
CLIPS = ("ls_test_8455-210777-0068.wav", "arctic_axb_a0004.wav")  # 2.6 s and 2.8 s


@dataclass
class Fleet:
    """The stack's service processes by replica slot (stt-1, stt-2, ...), killable."""

    stack: Stack
    procs: dict[str, subprocess.Popen[bytes]]
    replicas: dict[str, int]
    kill_order: tuple[str, ...] = KILL_ORDER
    nats_pid: int | None = None
    restarted: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, stack: Stack, replicas: dict[str, int], kill_order: tuple[str, ...]) -> Fleet:
        fleet = cls(stack, {f"{n}-1": p for n, p in stack.service_procs.items()}, replicas,
                    kill_order)
        others = [p for p in stack.procs if p not in stack.service_procs.values()]
        fleet.nats_pid = others[0].pid if others else None
        for name, count in replicas.items():
            for i in range(2, count + 1):
                fleet.spawn(f"{name}-{i}")
        return fleet

    def spawn(self, slot: str) -> None:
        env = self.stack.service_env()
        env["VOXBUS_METRICS_PORT"] = "0"
        assert self.stack.log_dir is not None
        log = (self.stack.log_dir / f"{slot}.log").open("ab")
        proc = spawn([sys.executable, "-m", f"voxbus_{service_of(slot)}"], env=env, log=log)
        self.stack.procs.append(proc)  # stopped with the stack
        self.stack._logs.append(log)  # closed with the stack
        self.procs[slot] = proc

    async def kill_and_restart(self, slot: str) -> None:
        proc = self.procs[slot]
        proc.send_signal(signal.SIGKILL)
        while proc.poll() is None:  # reaped without blocking the callers' ticker
            await asyncio.sleep(0.01)
        self.restarted[slot] += 1
        self.spawn(slot)

    def pids(self) -> dict[str, int]:
        pids = {slot: p.pid for slot, p in self.procs.items() if p.poll() is None}
        if self.nats_pid:
            pids["nats"] = self.nats_pid
        pids["loadgen"] = os.getpid()  # the generator itself (it shares the machine)
        return pids


async def wait_replicas(nats_url: str, counts: dict[str, int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            status = await ping_services(nats_url)
            if all(status.get(s, 0) >= n for s, n in counts.items()):
                return True
        await asyncio.sleep(0.2)
    return False


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def disk_mb(folder: Path) -> float:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            total += path.stat().st_size if path.is_file() else 0
    return round(total / 2**20, 1)


@dataclass
class PhaseRun:
    """What one phase recorded while it ran (bench/soak_report.py turns it into figures)."""

    t0: float
    stats: LoadStats
    log: TurnLog
    series: list[dict[str, Any]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)


async def sample(fleet: Fleet, run: PhaseRun, every_s: float, stop: asyncio.Event) -> None:
    """Every `every_s`: RSS of each process, CPU of the platform and of the whole machine."""
    prev_cpu: dict[int, float] = {}
    prev_busy, prev_wall = machine_busy(), time.monotonic()
    cores = os.cpu_count() or 1
    next_line = 60.0
    while True:
        now = time.monotonic()
        rss: dict[str, float] = {}
        cpu: dict[int, float] = {}
        for slot, pid in fleet.pids().items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                cpu[pid] = cpu_seconds(pid)
                if (mb := rss_mb(pid)) > 0:
                    rss[slot] = round(mb, 1)
        busy, wall, me = machine_busy(), now - prev_wall, os.getpid()
        by_process = {slot: round((cpu[pid] - prev_cpu[pid]) / wall * 100, 1)
                      for slot, pid in fleet.pids().items() if pid in cpu and pid in prev_cpu}
        ours = sum(c - prev_cpu[p] for p, c in cpu.items() if p in prev_cpu and p != me)
        gen = cpu.get(me, 0.0) - prev_cpu.get(me, 0.0)
        machine = (busy[0] - prev_busy[0]) / max(1.0, busy[1] - prev_busy[1]) * 100 * cores
        pct = {"cpu_platform_pct": round(ours / wall * 100, 1),
               "cpu_loadgen_pct": round(gen / wall * 100, 1),
               "cpu_machine_pct": round(machine, 1),  # percent of one core, all processes
               "cpu_others_pct": round(max(0.0, machine - (ours + gen) / wall * 100), 1)}
        run.series.append({"t": round(now - run.t0, 1), "rss_mb": rss,
                           "jetstream_disk_mb": disk_mb(fleet.stack.workdir / "nats"),
                           "cpu_pct_by_process": by_process,  # (a slot restarted: from then)
                           **(pct if prev_cpu else dict.fromkeys(pct))})
        prev_cpu, prev_busy, prev_wall = cpu, busy, now
        if now - run.t0 >= next_line:
            next_line += 60.0
            s = run.stats
            print(f"  {now - run.t0:5.0f} s: active {s.active}, turns {s.turns}, timeouts "
                  f"{s.timeouts}, errors {len(run.log.errors)}, kills {len(run.kills)}, RSS "
                  f"{sum(v for k, v in rss.items() if k != 'loadgen'):.0f} MB", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass


async def kill_rotation(fleet: Fleet, run: PhaseRun, every_s: float, end_s: float) -> None:
    """SIGKILL a worker mid-way through every `every_s`, rotating over KILL_ORDER and over
    each service's replicas, and start it again at once."""
    k = 0
    while (at := every_s / 2 + k * every_s) <= end_s - 10.0:
        await asyncio.sleep(max(0.0, run.t0 + at - time.monotonic()))
        order = fleet.kill_order
        service = order[k % len(order)]
        slot = f"{service}-{(k // len(order)) % fleet.replicas[service] + 1}"
        t, t_wall = time.monotonic(), time.time()
        await fleet.kill_and_restart(slot)
        kill: dict[str, Any] = {"slot": slot, "service": service, "t_s": round(t - run.t0, 1),
                                "t_mono": t, "t_wall": t_wall, "ready_after_s": None}
        run.kills.append(kill)
        if await wait_replicas(fleet.stack.nats_url, {service: fleet.replicas[service]}, 60.0):
            kill["ready_after_s"] = round(time.monotonic() - t, 2)
        k += 1


async def run_phase(fleet: Fleet, cfg: LoadConfig, hangover_ms: float, every_s: float,
                    kill_every_s: float) -> PhaseRun:
    run = PhaseRun(time.monotonic(), LoadStats(), TurnLog(hangover_ms))
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(fleet, run, every_s, stop))
    killer = (asyncio.create_task(kill_rotation(fleet, run, kill_every_s,
                                                cfg.ramp_s + cfg.duration_s))
              if kill_every_s else None)
    await run_traced_load(cfg, run.stats, run.log)
    stop.set()
    await sampler
    if killer is not None:
        killer.cancel()
        await asyncio.gather(killer, return_exceptions=True)
    return run


def figures(run: PhaseRun, cfg: LoadConfig, minutes: int,
            baseline: dict[str, float | None] | None, window_s: float,
            logs: Path) -> dict[str, Any]:
    overhead = [o for _, o in run.log.turns]
    end_s = cfg.ramp_s + cfg.duration_s
    last = run.t0 + end_s + cfg.turn_timeout_s  # "never heard again" ends with the call
    silent = [(c, a, min(b, last)) for c, a, b in run.log.silent_clips()]
    mins = per_minute(run.log, run.t0, minutes, silent)
    lost = [u for u in run.log.utterances.values() if u.lost]
    by_service = rss_by_service(run.series)
    errors = Counter(m for _, _, m in run.log.errors) + Counter(run.stats.errors)
    if run.kills:
        moved_calls(logs / "gateway.log", run.kills)
        kill_effects(run.log, run.kills, window_s, baseline or {
            "p50": percentile(overhead, 50), "p99": percentile(overhead, 99)}, silent)
    disk = [s["jetstream_disk_mb"] for s in run.series]
    for prev, s in zip(run.series, run.series[1:], strict=False):  # p99 beside the CPU figures
        window = [o for t, o in run.log.turns if prev["t"] < t - run.t0 <= s["t"]]
        s["overhead_p99_ms"] = percentile(window, 99)

    def mean(key: str) -> float | None:
        values = [s[key] for s in run.series if s.get(key) is not None]
        return round(sum(values) / len(values), 1) if values else None

    return {
        "calls": cfg.calls, "duration_s": cfg.duration_s, "ramp_s": cfg.ramp_s,
        "summary": summarize(run.stats),
        "overhead_ms": {"p50": percentile(overhead, 50), "p99": percentile(overhead, 99),
                        "n": len(overhead)},
        "clips_spoken": sum(len(c) for c in run.log.clips.values()),
        "utterances": len(run.log.utterances), "lost_turns": len(lost) + len(silent),
        "lost_by_outcome": dict(Counter(u.outcome for u in lost)) | (
            {"unheard_clip": len(silent)} if silent else {}),
        "unheard_clips": [{"call": c, "at_s": round(a - run.t0, 1),
                           "heard_again_after_s": round(b - a, 1)} for c, a, b in silent[:50]],
        "lost_examples": [u.to_json(run.t0) for u in lost[:10]],
        "replayed_vad_events": len(run.log.phantom_vad),
        "idle_reprompts": len(run.log.reprompts),
        "agent_audio_paused": len(run.log.barge_ins),
        "odd_turns": [{**o, "t": round(o["t"] - run.t0, 2)} for o in run.log.odd_turns],
        "skipped_by_reason": dict(Counter(u.skipped for u in run.log.utterances.values()
                                          if u.skipped)),
        "errors": [[n, m] for m, n in errors.most_common(10)],
        "per_minute": mins,
        "p99_drift_ms": drift(mins, 0), "p99_drift_after_warmup_ms": drift(mins, 1),
        "rss_growth": rss_growth(by_service, end_s),
        "rss_growth_per_process": rss_growth(run.series, end_s),
        "restarted": sorted({k["slot"] for k in run.kills}),
        "jetstream_disk_mb": {"first": disk[0] if disk else None,
                              "last": disk[-1] if disk else None},
        "cpu_pct_mean": {k: mean(f"cpu_{k}_pct")
                         for k in ("platform", "loadgen", "others", "machine")},
        "kills": [{k: v for k, v in kill.items() if k not in ("t_mono", "t_wall")}
                  for kill in run.kills],
        "stt_failover_added_ms": pooled_failover(run.kills),
        "rss_by_service": by_service,
        "samples": run.series,
    }


def run_one(name: str, args: argparse.Namespace, clips: list[bytes], env: dict[str, str],
            baseline: dict[str, float | None] | None) -> dict[str, Any]:
    kill_every = args.kill_every if name == "kills" else 0.0
    cfg = LoadConfig(url="", calls=args.calls, duration_s=args.minutes * 60.0, clips=clips,
                     ramp_s=max(3.0, args.calls / 40))
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), env=env, log_dir=logs)
        with stack.running():
            fleet = Fleet.of(stack, args.replicas, args.kill_order)
            if not asyncio.run(wait_replicas(stack.nats_url, args.replicas, 120.0)):
                raise RuntimeError(f"replicas {args.replicas} did not all come up")
            cfg.url = stack.gateway_url
            print(f"{name}: {args.calls} calls for {args.minutes} min"
                  + (f", a kill every {kill_every:.0f} s" if kill_every else ""), flush=True)
            run = run_fast(run_phase(fleet, cfg, Settings().vad_hangover_ms,
                                     args.sample_every, kill_every))
            sizes = log_sizes(logs)
            # the extra replicas drain while NATS is still up (Stack.stop knows only the first)
            stop_all([p for p in fleet.procs.values() if p not in stack.service_procs.values()])
        phase = figures(run, cfg, args.minutes, baseline, args.window, logs)
        phase["service_logs"] = scan_logs(logs, sizes)
        if args.keep_logs:
            shutil.copytree(logs, args.keep_logs / name, dirs_exist_ok=True)
    return phase


def replica_counts(value: str) -> dict[str, int]:
    counts = dict(REPLICAS)
    for item in filter(None, value.split(",")):
        name, _, n = item.partition("=")
        if name not in counts or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"not service=count: {item!r}")
        counts[name] = int(n)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10, help="length of each phase")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds (phase kills)")
    parser.add_argument("--phases", default="steady,kills")
    parser.add_argument("--replicas", type=replica_counts, default=dict(REPLICAS),
                        help="e.g. stt=3 (the others keep their defaults)")
    parser.add_argument("--kill-order", type=lambda v: tuple(v.split(",")), default=KILL_ORDER,
                        help="services the kills rotate over, e.g. stt")
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sampling, s")
    parser.add_argument("--window", type=float, default=10.0,
                        help="a kill's window: utterances open at it or started this soon after")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy service logs here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    clips = [load_wav(ROOT / "speech" / name) for name in CLIPS]
    env = instant_env()
    # (a PYTHONPATH given runs another tree's services: a before/after comparison)
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", ""), str(ROOT)]))
    env.update({"PYTHONPATH": path, "VOXBUS_LOG_LEVEL": "WARNING",
                # VAD-only endpointing: the platform's overhead, not the end-of-turn model's
                # holds (the synthetic clips end mid-phrase for smart-turn: ~860 ms held)
                "VOXBUS_END_OF_TURN": "vad",
                # one STT replica must be able to carry every call while the other restarts
                "VOXBUS_STT_MAX_CALLS": str(args.calls + 10),
                "VOXBUS_LLM_CONCURRENCY": "64", "VOXBUS_TTS_CONCURRENCY": "64"})
    started = time.time()
    phases: dict[str, dict[str, Any]] = {}
    for name in args.phases.split(","):
        steady = phases.get("steady", {}).get("overhead_ms")
        phases[name] = run_one(name, args, clips, env, steady)
    report = {
        "benchmark": "soak",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "providers": "voxbus_testkit.instant (instant STT/LLM/TTS), WebRTC VAD",
        "parameters": {"calls": args.calls, "minutes": args.minutes,
                       "kill_every_s": args.kill_every, "sample_every_s": args.sample_every,
                       "kill_window_s": args.window, "replicas": args.replicas,
                       "kill_order": args.kill_order, "clips": CLIPS,
                       "bus_frame_ms": Settings().bus_frame_ms},
        "definitions": {
            "overhead": "voice-to-voice minus the VAD hangover "
                        f"({Settings().vad_hangover_ms} ms), turns played to the end",
            "rss_growth": f"first sample after the {WARMUP_S:.0f} s warm-up (excluded) vs the "
                          f"last before the load stops; target <= {RSS_TARGET_PCT:.0f}%; in "
                          "phase kills the restarted replicas start over (see restarted)",
            "p99_drift": "last-minute p99 overhead minus first-minute p99 (and minus minute 2)",
            "lost_turn": "a clip the caller spoke that no VAD speech start followed before its "
                         "next clip (unheard_clip), a VAD utterance with no final transcript "
                         "and no skip (no_transcript), or a final transcript whose agent turn "
                         "never ended (no_turn)",
            "affected_turns": "utterances open at a kill or started within kill_window_s after "
                              "it that were lost or slower than the steady phase's p99",
            "replayed_vad_events": "VAD speech starts for an utterance that already had its "
                                   "final transcript (an STT replay after a kill); the load "
                                   "generator then waits for a turn that never comes",
            "idle_reprompts": "agent turns with no caller text: the gateway's idle re-prompt "
                              "after 12 s without caller activity",
            "agent_audio_paused": "barge-in pauses of the agent's audio; the synthetic callers "
                                  "never talk over the agent, so each one is spurious",
            "max_added_latency": "worst overhead in a kill's window minus the steady p50"},
        "phases": phases,
    }
    out = args.out or ROOT / "bench" / "results" / f"soak-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    plot(report, out.with_suffix(".png"))
    for name, phase in phases.items():
        print_phase(name, phase)
    print(f"\nwritten to {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
