"""Leak benchmark: many short calls one after another (a few at a time) through the five
real services and a real nats-server, with the resident memory of every process sampled
as they go. A leak is what grows per call after the warm-up: a per-call dict never
emptied, a task never reaped, a subscription never dropped (pipecat#3750: ~1 MB per
call-minute; livekit/agents#2166).

Each call: connect to the PCM WebSocket edge, speak one clip (2.6 s of real speech, sent
`--speed` times faster than real time) and silence until the agent's turn has played out,
then hang up and wait for the gateway to close the call.

    python -m bench.leak [--calls 10000] [--parallel 16] [--speed 4]   # instant models
    python -m bench.leak --real --calls 1000 --parallel 2 --speed 1    # as `make run` ships

Figures: RSS per service at the end of the warm-up and at the end, growth in %, and the
slope (MB per 1,000 calls) fitted over the samples after the warm-up: the slope says
whether memory still climbs, the endpoints how much it did. Target: <= 1% growth after
the warm-up over 10,000 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.capacity import platform_pids, rss_mb
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_testkit.instant import instant_env

ROOT = Path(__file__).resolve().parents[1]
CLIP = "ls_test_8455-210777-0068.wav"  # 2.6 s
FRAME = 640  # 20 ms of 16 kHz PCM16
TARGET_PCT = 1.0


async def one_call(session: aiohttp.ClientSession, url: str, call_id: str, clip: bytes,
                   speed: float, timeout_s: float) -> str:
    """"" when the call went as a caller expects (heard, answered, hung up), else why not."""
    params = {"sample_rate": "16000", "call_id": call_id}
    answered = asyncio.Event()
    async with session.ws_connect(url, params=params, heartbeat=30.0) as ws:

        async def listen() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    if event.get("type") == "turn" and event.get("user_text"):
                        answered.set()

        listener = asyncio.create_task(listen())
        audio = clip + bytes(FRAME * 25)  # the clip, then half a second of silence
        start, deadline = time.monotonic(), time.monotonic() + timeout_s
        sent = 0
        while not answered.is_set() and time.monotonic() < deadline and not ws.closed:
            frame = audio[sent * FRAME:(sent + 1) * FRAME] or bytes(FRAME)
            await ws.send_bytes(frame.ljust(FRAME, b"\0"))
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 / speed - time.monotonic()))
        why = "" if answered.is_set() else "no answer" if not ws.closed else "closed early"
        with contextlib.suppress(Exception):
            await ws.send_str(json.dumps({"type": "stop"}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener, 30.0)  # the gateway closes after the stop
        listener.cancel()
        return why


async def run_calls(url: str, clip: bytes, args: argparse.Namespace, pids: dict[str, int],
                    samples: list[dict[str, Any]], problems: Counter[str]) -> float:
    """`args.calls` calls, `args.parallel` at a time; RSS sampled every `args.sample_every`
    finished calls. Returns the seconds it took."""
    todo = iter(range(args.calls))
    done = 0
    started = time.monotonic()
    stamp = time.strftime("%H%M%S")

    def record() -> None:
        samples.append({"calls": done, "t": round(time.monotonic() - started, 1),
                        "rss_mb": {n: round(rss_mb(p), 1) for n, p in pids.items()},
                        "jetstream_mb": jetstream_mb(args.monitor_port)})

    async def caller() -> None:
        nonlocal done
        async with aiohttp.ClientSession() as session:
            for i in todo:
                try:
                    why = await one_call(session, url, f"leak-{stamp}-{i}", clip, args.speed,
                                         args.timeout)
                except (aiohttp.ClientError, OSError) as exc:
                    why = f"{type(exc).__name__}"
                if why:
                    problems[why] += 1
                done += 1
                if done % args.sample_every == 0:
                    record()
                    print(f"  {done} calls, {time.monotonic() - started:.0f} s, problems "
                          f"{sum(problems.values())}, RSS " + ", ".join(
                              f"{k} {v:.0f}" for k, v in samples[-1]["rss_mb"].items()),
                          flush=True)

    record()
    await asyncio.gather(*(caller() for _ in range(args.parallel)))
    if samples[-1]["calls"] != done:
        record()
    return time.monotonic() - started


def jetstream_mb(port: int) -> dict[str, float]:
    """What nats-server keeps by policy (the streams' and buckets' retention: sessions for
    their TTL, call events for an hour), in memory and on disk: growth here is retention,
    not a leak."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=5) as reply:
            jsz = json.loads(reply.read())
    except (OSError, ValueError):
        return {}
    return {"memory": round(jsz.get("memory", 0) / 2**20, 1),
            "file": round(jsz.get("storage", 0) / 2**20, 1)}


def slope_per_1000(points: list[tuple[float, float]]) -> float | None:
    """Least-squares MB per 1,000 calls."""
    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    fit = statistics.linear_regression([x for x, _ in points], [y for _, y in points])
    return round(fit.slope * 1000, 2)


def growth(samples: list[dict[str, Any]], warmup_calls: int) -> dict[str, dict[str, Any]]:
    after = [s for s in samples if s["calls"] >= warmup_calls]
    if len(after) < 2:
        return {}
    first, last = after[0], after[-1]
    out: dict[str, dict[str, Any]] = {}
    for name, a in first["rss_mb"].items():
        b = last["rss_mb"].get(name)
        if not a or b is None:
            continue
        pct = round((b - a) / a * 100, 2)
        out[name] = {"after_warmup_mb": a, "end_mb": b, "growth_pct": pct,
                     "mb_per_1000_calls": slope_per_1000(
                         [(s["calls"], s["rss_mb"][name]) for s in after if name in s["rss_mb"]]),
                     "within_target": pct <= TARGET_PCT,
                     "from_calls": first["calls"], "to_calls": last["calls"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--speed", type=float, default=4.0, help="× real time for the clip")
    parser.add_argument("--real", action="store_true",
                        help="the real models `make run` ships (default: instant test models)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="calls before the baseline sample (default: a tenth)")
    parser.add_argument("--sample-every", type=int, default=None,
                        help="finished calls between RSS samples (default: a fiftieth)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per call, s")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.warmup = args.calls // 10 if args.warmup is None else args.warmup
    args.sample_every = args.sample_every or max(1, args.calls // 50)
    clip = load_wav(ROOT / "speech" / CLIP)
    env = {"VOXBUS_LOG_LEVEL": "WARNING", "VOXBUS_METRICS_PORT": "0"}
    if not args.real:
        env |= instant_env() | {"VOXBUS_END_OF_TURN": "vad"}
    samples: list[dict[str, Any]] = []
    problems: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        args.monitor_port = free_port()
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), env=env,
                      log_dir=Path(tmp) / "logs", nats_monitor_port=args.monitor_port)
        with stack.running():
            pids = platform_pids(stack)
            # with the real models: the embedded llama.cpp servers too (started in this order)
            servers = [p for p in stack.procs if "llama-server" in str(p.args)]
            pids |= dict(zip(("llama", "llama-background"), (p.pid for p in servers),
                             strict=False))
            print(f"leak: {args.calls} calls, {args.parallel} at a time, "
                  f"{'real' if args.real else 'instant'} models", flush=True)
            took = asyncio.run(run_calls(stack.gateway_url, clip, args, pids, samples,
                                         problems))
    result = growth(samples, args.warmup)
    report = {
        "benchmark": "leak", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "models": "real (as make run ships)" if args.real else
                  "voxbus_testkit.instant, WebRTC VAD, VAD-only end of turn",
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "took_s": round(took, 1), "calls_per_s": round(args.calls / took, 2),
        "problems": dict(problems), "growth": result, "samples": samples,
        "definitions": {"growth_pct": f"RSS at the last sample vs the first after "
                                      f"{args.warmup} calls (the warm-up); target <= "
                                      f"{TARGET_PCT}%",
                        "mb_per_1000_calls": "least-squares slope over the samples after "
                                             "the warm-up"}}
    kind = "real" if args.real else "instant"
    out = args.out or ROOT / "bench" / "results" / f"leak-{kind}-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\n{args.calls} calls in {took:.0f} s ({args.calls / took:.1f}/s); problems: "
          f"{dict(problems) or 'none'}")
    print(f"RSS after {args.warmup} calls -> end (MB), growth, slope:")
    for name, g in result.items():
        mark = "" if g["within_target"] else f"  > {TARGET_PCT}%"
        print(f"  {name:8s} {g['after_warmup_mb']:8.1f} -> {g['end_mb']:8.1f}  "
              f"{g['growth_pct']:+6.2f}%  {g['mb_per_1000_calls']} MB/1000 calls{mark}")
    kept = [s["jetstream_mb"] for s in samples if s.get("jetstream_mb")]
    if kept:
        print(f"JetStream data kept by retention (MB): {kept[0]} -> {kept[-1]}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
