"""Hostile load, measured as a caller meets it: a good caller on the Twilio edge (μ-law media
stream in real time) talks to `make run`'s restaurant agent (embedded models, NATS closed
as `voxbus run` starts it) while floods hit the gateway, each from its own loopback address:

- sip: 100 INVITEs that are never ACKed, a new wave every 30 s;
- websocket: 100 garbage Twilio streams that never send `start`, renewed as they are closed;
- audiosocket: 100 connections that never finish their UUID frame, renewed likewise;
- twilio-confirmed: 50 Twilio streams with a valid `start` that then stay silent (confirmed
  calls: each gets the greeting and an STT session; what per-call limits are for).

Per condition: voice-to-voice of the good caller's turns (last voiced frame sent -> first
answering frame received) against the same turns (same clips, same order) with no flood,
as medians and as the median of the paired per-clip ratios; replicas declared dead. Run it
on an otherwise idle machine: two cores shared with anything else measure that instead.

    python -m bench.hostile [--turns N] [--out bench/results/hostile-YYYYMMDD.json]
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
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_cli.twilio_phone import TwilioPhone
from voxbus_testkit.floods import (
    FloodResult,
    audiosocket_flood,
    garbage_ws_flood,
    good_twilio_turn,
    sip_invite_flood,
)

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agents" / "restaurant" / "agent.yaml"
CLIPS = ["arctic_aew_a0001.wav", "arctic_aew_a0002.wav", "arctic_aew_a0003.wav",
         "arctic_axb_a0004.wav"]
Wave = Callable[[Stack, asyncio.Event, int], Coroutine[Any, Any, FloodResult]]


async def confirmed_twilio_flood(url: str, count: int, source: str, stop: asyncio.Event
                                 ) -> FloodResult:
    """`count` Twilio streams with a valid start that then send nothing."""
    result = FloodResult(sent=count)
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(n: int) -> str:
            try:
                async with http.ws_connect(url) as ws:
                    await TwilioPhone(ws, stream_sid=f"MZflood{n}").start(f"CAflood{n}")
                    reading = asyncio.ensure_future(drain(ws))  # (the greeting's media)
                    waiting = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    reading.cancel()
                    waiting.cancel()
                    return "held" if stop.is_set() else "closed by gateway"
            except aiohttp.WSServerHandshakeError as exc:
                return f"refused {exc.status}"
            except (aiohttp.ClientError, OSError):
                return "error"

        result.outcomes.update(await asyncio.gather(*(one(n) for n in range(count))))
    return result


async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


def waves(stack: Stack) -> dict[str, Wave]:
    twilio = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    sip_port = int(stack.env["VOXBUS_SIP_PORT"])
    audiosocket_port = int(stack.env["VOXBUS_AUDIOSOCKET_PORT"])

    async def sip(_: Stack, stop: asyncio.Event, n: int) -> FloodResult:
        wave_stop = asyncio.Event()
        task = asyncio.create_task(sip_invite_flood(sip_port, 100, "127.0.0.3", wave_stop, n))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 30.0)
        wave_stop.set()
        return await task

    return {
        "sip": sip,
        "websocket": lambda _, stop, n: garbage_ws_flood(twilio, 100, "127.0.0.4", stop),
        "audiosocket": lambda _, stop, n: audiosocket_flood(audiosocket_port, 100,
                                                            "127.0.0.5", stop),
        "twilio-confirmed": lambda _, stop, n: confirmed_twilio_flood(twilio, 50,
                                                                      "127.0.0.6", stop),
    }


async def sustained(stack: Stack, wave: Wave, stop: asyncio.Event) -> dict[str, Any]:
    """Waves of the flood until `stop`: each new wave when the last one was shed."""
    outcomes: Counter[str] = Counter()
    n = sent = 0
    while not stop.is_set():
        result = await wave(stack, stop, n)
        outcomes.update(result.outcomes)
        sent += result.sent
        n += 1
    return {"waves": n, "sent": sent, "outcomes": dict(outcomes)}


def gateway_metric(stack: Stack, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{stack.metrics_ports['gateway']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


async def good_turns(stack: Stack, clips: list[bytes], tag: str) -> list[float | None]:
    twilio = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    out: list[float | None] = []
    for n, clip in enumerate(clips):
        turn = await good_twilio_turn(twilio, clip, f"CA{tag}{n}", answer_timeout_s=90)
        out.append(None if turn.voice_to_voice_ms is None else round(turn.voice_to_voice_ms))
    return out


def summary(ms: list[float | None]) -> dict[str, Any]:
    got = sorted(m for m in ms if m is not None)
    return {"turns": len(ms), "answered": len(got),
            "p50_ms": round(statistics.median(got)) if got else None,
            "max_ms": max(got) if got else None}


async def run(stack: Stack, clips: list[bytes]) -> dict[str, Any]:
    await good_turns(stack, clips[:1], "warm")
    quiet_turns = await good_turns(stack, clips, "quiet")
    results: dict[str, Any] = {"quiet": {"good_call": summary(quiet_turns),
                                         "turns_ms": quiet_turns}}
    for name, wave in waves(stack).items():
        lost_before = gateway_metric(stack, "voxbus_replicas_lost_total")
        stop = asyncio.Event()
        flooding = asyncio.create_task(sustained(stack, wave, stop))
        await asyncio.sleep(1.0)  # (the first wave is in: measurement, not synchronisation)
        turns = await good_turns(stack, clips, name.replace("-", ""))
        stop.set()
        flood = await flooding
        good = summary(turns)
        quiet = results["quiet"]["good_call"]["p50_ms"]
        if good["p50_ms"] and quiet:
            good["added_p50_pct"] = round(100 * (good["p50_ms"] / quiet - 1), 1)
        paired = [d / q - 1 for d, q in zip(turns, quiet_turns, strict=True) if d and q]
        if paired:  # the same clip with and without the flood
            good["added_paired_median_pct"] = round(100 * statistics.median(paired), 1)
        results[name] = {"good_call": good, "turns_ms": turns, "flood": flood,
                         "replicas_declared_dead": gateway_metric(
                             stack, "voxbus_replicas_lost_total") - lost_before}
        print(name, json.dumps(results[name]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=2 * len(CLIPS),
                        help="good turns per flood")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    clips = [load_wav(ROOT / "speech" / name) for name in (CLIPS * 4)[: args.turns]]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs",
                      secure=True, env={"VOXBUS_AGENT_FILE": str(AGENT),
                                        "VOXBUS_SIP_PORT": str(free_port()),
                                        "VOXBUS_AUDIOSOCKET_PORT": str(free_port())})
        with stack.running(timeout_s=300):
            results = asyncio.run(run(stack, clips))
    report = {
        "benchmark": "hostile",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "agent": str(AGENT.relative_to(ROOT)), "edge": "twilio (μ-law 8 kHz media stream)",
        "measure": "caller side: last voiced frame sent -> first answering frame received",
        "results": results,
    }
    out = args.out or ROOT / "bench" / "results" / f"hostile-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
