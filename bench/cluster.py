"""NATS cluster benchmark: what 3 replicas cost, and what losing a node adds to a turn.

The five real services with instant models (voxbus_testkit.instant), so what is measured is the
platform and the bus, not model time; `voxbus load`'s synthetic callers speak real speech
in real time over the gateway's PCM WebSocket edge and timestamp what it tells them.

Phases, each on a fresh stack:
1. `single`: one nats-server (replicas 1), then kill -9 it and start it again (the single
   node's failure);
2. `cluster-r1`: a 3-node cluster with 1 replica (what the cluster costs, without copies);
3. `cluster-r3`: the cluster with 3 replicas, then kill -9 the leader of the audio stream
   (restarted 10 s later), then the meta leader (likewise);
4. `cluster-r1-again`, `cluster-r3-again`: a second pair, undisturbed (the replicas' cost);
5. `light-r1`, `light-r3` and again: two pairs at 10 calls, where the 2 cores are not
   saturated (the replicas' cost without the queueing of a loaded machine);
6. `rolling`: the cluster with 3 replicas under 50 calls, restarted node by node.

Node losses and the first pairs run 30 calls (`--calls`): at 50 this 2-core box, running
three nats-servers beside the services, sits at 180 % CPU and undisturbed turns vary by ~1 s.

Per phase: turn overhead (voice-to-voice minus the VAD hangover) p50/p95 while nothing
fails, bus hop p50/p99 per message type, CPU per process; per failure: the overhead added
to the turns in flight when it hit (p50/p95 over the turns whose speech had started and
whose answer had not been played), lost turns and failed calls. A turn's added overhead is
over the quiet p50 of the same clip, as is the replicas' cost (R3 against R1, clip by clip):
the clips' own pauses put their quiet overheads 0.2-1.7 s apart.

    python -m bench.cluster [--calls 30] [--light-calls 10] [--rolling-calls 50] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.capacity import cpu_seconds, hop_quantiles
from bench.soak_calls import TurnLog, run_traced_load
from voxbus_cli.embedded import free_port, start_nats, stop_all
from voxbus_cli.load import LoadConfig, LoadStats, load_clips, run_fast
from voxbus_cli.load_report import percentile
from voxbus_cli.stack import Stack
from voxbus_common.config import Settings
from voxbus_testkit.instant import instant_env

ROOT = Path(__file__).resolve().parents[1]
QUIET_S = 25.0  # load before the first failure: the undisturbed figures

Step = Callable[[Stack], Awaitable[str]]


def process_groups(stack: Stack) -> dict[str, list[int]]:
    groups = {name: [p.pid] for name, p in stack.service_procs.items()}
    if stack.cluster is not None:
        groups["nats"] = [p.pid for p in stack.cluster.procs]
    else:
        groups["nats"] = [stack.procs[0].pid]
    return groups


def cpu_of(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


async def kill_single_node(stack: Stack) -> str:
    """kill -9 the only nats-server and start it again on its port and store."""
    proc = stack.procs[0]
    proc.kill()
    stop_all([proc])
    port = int(stack.nats_url.rsplit(":", 1)[1])
    assert stack.log_dir is not None
    # (on this thread: a child started from a worker thread dies when that thread ends)
    new, _ = start_nats(stack.workdir / "nats", port, (stack.log_dir / "nats-2.log").open("ab"))
    stack.procs[0] = new
    return "single node killed and restarted"


def kill_leader_of(stream: str) -> Step:
    async def step(stack: Stack) -> str:
        assert stack.cluster is not None
        index = stack.cluster.stream_leader(stream)
        stack.cluster.kill(index)
        return f"killed n{index + 1} (leader of {stream})"
    return step


async def kill_meta_leader(stack: Stack) -> str:
    assert stack.cluster is not None
    index = stack.cluster.meta_leader()
    stack.cluster.kill(index)
    return f"killed n{index + 1} (meta leader)"


async def restart_dead_nodes(stack: Stack) -> str:
    assert stack.cluster is not None
    dead = [i for i, node in enumerate(stack.cluster.nodes) if node.proc is None]
    for index in dead:
        await asyncio.to_thread(stack.cluster.start_node, index)
    await asyncio.to_thread(stack.cluster.wait_healthy, 120.0)
    return "restarted " + ", ".join(f"n{i + 1}" for i in dead)


async def rolling_restart(stack: Stack) -> str:
    assert stack.cluster is not None
    for index in range(len(stack.cluster.nodes)):
        await asyncio.to_thread(stack.cluster.restart, index, 120.0)
    return "rolling restart of every node"


def clip_baselines(log: TurnLog, start: float, end: float) -> tuple[dict[int, float], float | None]:
    """The quiet overhead p50 of each clip: a clip's own pauses set how long the endpointing
    waits (0.2-1.7 s apart here), so a turn is compared with the same words said quietly.
    Also the p95 of quiet turns over their clip's p50: what "added" reads with no failure."""
    by_clip: dict[int, list[float]] = {}
    for u in log.utterances.values():
        clip = log.clip_of(u)
        if (clip is not None and u.overhead_ms is not None and not u.interrupted
                and u.done_t is not None and start <= u.done_t <= end):
            by_clip.setdefault(clip, []).append(u.overhead_ms)
    p50s = {clip: p50 for clip, values in by_clip.items()
            if (p50 := percentile(values, 50)) is not None}
    spread = [v - p50s[clip] for clip, values in by_clip.items() for v in values]
    return p50s, percentile(spread, 95)


def affected(log: TurnLog, at: float, baseline: float | None,
             per_clip: dict[int, float] | None = None) -> dict[str, Any]:
    """The turns in flight at `at`: their added overhead over the quiet p50 of the same clip
    (of all turns for a clip never answered quietly), and losses."""
    hit = [u for u in log.utterances.values()
           if u.start_t <= at and (u.done_t is None or u.done_t >= at) and not u.skipped]
    added = []
    for u in hit:
        clip = log.clip_of(u)
        base = (per_clip or {}).get(clip, baseline) if clip is not None else baseline
        if u.overhead_ms is not None and base is not None:
            added.append(u.overhead_ms - base)
    return {"turns": len(hit), "lost": sum(1 for u in hit if u.lost),
            "added_ms_p50": percentile(added, 50), "added_ms_p95": percentile(added, 95),
            "added_ms_max": round(max(added), 1) if added else None}


async def run_phase(stack: Stack, calls: int, duration_s: float,
                    steps: list[tuple[float, Step]], quiet_s: float = QUIET_S) -> dict[str, Any]:
    clips = load_clips(ROOT / "speech", limit=8)
    hangover = Settings().vad_hangover_ms
    cfg = LoadConfig(url=stack.gateway_url, calls=calls, duration_s=duration_s, clips=clips,
                     ramp_s=max(3.0, calls / 40))
    stats, log = LoadStats(), TurnLog(hangover)
    groups = process_groups(stack)
    t0 = time.monotonic()
    load = asyncio.create_task(run_traced_load(cfg, stats, log))
    await asyncio.sleep(cfg.ramp_s)  # (sampling times, not synchronisation)
    cpu_before, c0 = cpu_of(groups), time.monotonic()
    await asyncio.sleep(quiet_s - cfg.ramp_s)
    cpu_after, c1 = cpu_of(groups), time.monotonic()
    hops = hop_quantiles(stack)
    quiet = [o for t, o in log.turns if t0 + cfg.ramp_s <= t <= c1]
    baseline = percentile(quiet, 50)
    per_clip, quiet_added_p95 = clip_baselines(log, t0 + cfg.ramp_s, c1)
    events: list[dict[str, Any]] = []
    for at, step in steps:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        when = time.monotonic()
        what = await step(stack)
        events.append({"t_s": round(when - t0, 1), "took_s": round(time.monotonic() - when, 1),
                       "what": what, "when": when})
    await load
    for event in events:
        event.update(affected(log, event.pop("when"), baseline, per_clip))
    cpu = {n: round((cpu_after[n] - cpu_before[n]) / (c1 - c0) * 100, 1) for n in groups}
    return {
        "calls": calls, "connected": stats.connected, "failed_calls": stats.failed,
        "turns": len(log.turns), "lost_turns": sum(1 for u in log.utterances.values() if u.lost),
        "quiet_overhead_ms": {"p50": baseline, "p95": percentile(quiet, 95),
                              "p99": percentile(quiet, 99), "n": len(quiet),
                              "same_clip_p50": {str(k): v for k, v in sorted(per_clip.items())},
                              "over_same_clip_p95": quiet_added_p95},
        "bus_hop_ms": hops, "cpu_percent": cpu, "cpu_percent_total": round(sum(cpu.values()), 1),
        "failures": events, "errors": stats.errors[:10],
    }


def phase(name: str, calls: int, duration_s: float, steps: list[tuple[float, Step]],
          cluster: int, replicas: int, quiet_s: float = QUIET_S) -> dict[str, Any]:
    env = {**instant_env(), "PYTHONPATH": str(ROOT), "VOXBUS_LOG_LEVEL": "WARNING",
           "VOXBUS_STT_MAX_CALLS": str(calls + 10), "VOXBUS_NATS_REPLICAS": str(replicas)}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), env=env,
                      log_dir=Path(tmp) / "logs", nats_cluster=cluster)
        with stack.running():
            result = run_fast(run_phase(stack, calls, duration_s, steps, quiet_s))
    result.update({"phase": name, "nats_nodes": max(1, cluster), "replicas": replicas})
    q = result["quiet_overhead_ms"]
    print(f"{name}: overhead p50 {q['p50']} / p95 {q['p95']} ms (over the same clip's p50: "
          f"p95 {q['over_same_clip_p95']} ms), CPU "
          f"{result['cpu_percent_total']}%, failed calls {result['failed_calls']}, "
          f"lost turns {result['lost_turns']}", flush=True)
    for event in result["failures"]:
        print(f"  {event['what']} at {event['t_s']} s: {event['turns']} turns in flight, "
              f"added p50 {event['added_ms_p50']} / p95 {event['added_ms_p95']} ms, "
              f"lost {event['lost']}", flush=True)
    return result


def mean_hop(by: dict[str, dict[str, Any]], names: tuple[str, ...], kind: str) -> float | None:
    """The mean over phases of one message type's bus hop p50."""
    values = [by[name]["bus_hop_ms"].get(kind, {}).get("p50") for name in names]
    return None if None in values else sum(values) / len(values)


def replica_cost(by: dict[str, dict[str, Any]], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """What 3 replicas cost a turn against 1: paired by clip (the same words in both; the
    p50 of all turns jumps between the clips' own modes, 0.2-1.7 s apart, with a few turns
    more or less of one clip), over R1/R3 pairs run one after the other (a shared machine
    drifts by ~15 ms between runs); and by bus hop."""
    diffs: list[float] = []
    for one, three in pairs:
        clips1 = by[one]["quiet_overhead_ms"]["same_clip_p50"]
        clips3 = by[three]["quiet_overhead_ms"]["same_clip_p50"]
        diffs += [clips3[c] - clips1[c] for c in clips1 if c in clips3]
    ones, threes = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    hops = {kind: None if (a := mean_hop(by, ones, kind)) is None
            or (b := mean_hop(by, threes, kind)) is None else round(b - a, 2)
            for kind in by[ones[0]]["bus_hop_ms"]}
    all_turns = [by[three]["quiet_overhead_ms"]["p50"] - by[one]["quiet_overhead_ms"]["p50"]
                 for one, three in pairs]
    cpu = [by[three]["cpu_percent_total"] - by[one]["cpu_percent_total"] for one, three in pairs]
    return {"calls": by[ones[0]]["calls"], "per_turn_p50_ms": percentile(diffs, 50),
            "all_turns_p50_ms_per_pair": [round(d, 1) for d in all_turns],
            "cpu_percent_added_per_pair": [round(c, 1) for c in cpu], "per_hop_p50_ms": hops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=30,
                        help="live calls while nodes fail and for the replicas' cost")
    parser.add_argument("--light-calls", type=int, default=10,
                        help="live calls for the replicas' cost on an unloaded machine")
    parser.add_argument("--rolling-calls", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    n, light = args.calls, args.light_calls
    phases = [
        phase("single", n, 55.0, [(30.0, kill_single_node)], cluster=0, replicas=1),
        phase("cluster-r1", n, 30.0, [], cluster=3, replicas=1),
        phase("cluster-r3", n, 80.0, [(30.0, kill_leader_of("VB_AUDIO")),
                                      (42.0, restart_dead_nodes), (55.0, kill_meta_leader),
                                      (67.0, restart_dead_nodes)], cluster=3, replicas=3),
        phase("cluster-r1-again", n, 30.0, [], cluster=3, replicas=1),
        phase("cluster-r3-again", n, 30.0, [], cluster=3, replicas=3),
        *(phase(f"light-r{r}{again}", light, 50.0, [], cluster=3, replicas=r, quiet_s=48.0)
          for again in ("", "-again") for r in (1, 3)),
        phase("rolling", args.rolling_calls, 75.0, [(30.0, rolling_restart)], cluster=3,
              replicas=3),
    ]
    by = {p["phase"]: p for p in phases}
    loaded = replica_cost(by, [("cluster-r1", "cluster-r3"),
                               ("cluster-r1-again", "cluster-r3-again")])
    unloaded = replica_cost(by, [("light-r1", "light-r3"), ("light-r1-again", "light-r3-again")])
    report = {
        "benchmark": "cluster",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "providers": "voxbus_testkit.instant (instant STT/LLM/TTS), WebRTC VAD; PCM WebSocket edge",
        "overhead": "voice-to-voice minus the VAD hangover; models take ~0 ms",
        "replica_cost": {"loaded": loaded, "unloaded": unloaded},
        "targets": {"added_per_failure_ms": 1000, "lost_turns": 0,
                    "rolling_restart_failed_calls": 0, "replica_cost_p50_ms": 5},
        "phases": phases,
    }
    out = args.out or ROOT / "bench" / "results" / f"cluster-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"3 replicas cost {unloaded['per_turn_p50_ms']} ms p50 per turn at {light} calls, "
          f"{loaded['per_turn_p50_ms']} ms at {n}; written to {out}")


if __name__ == "__main__":
    main()
