"""What faststream costs per request against raw nats-py, on the bus's request/reply shape.

A responder process answers the same protobuf request (a turn's context request, replied
with ten chat messages, the size memory answers mid-call) twice over: with a raw nats-py
subscription, as every voxbus service does, and with a faststream `NatsBroker` subscriber
(its default typed path, and with `apply_types=False`). A client in this process asks each
one, first one request at a time (the latency a turn sees), then 32 at once (throughput),
and the responder's CPU time per request is read from /proc. A real nats-server, loopback.

    python -m bench.rpc_cost [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from bench.voice_to_voice import ROOT
from voxbus.v1.llm_pb2 import ChatMessage, ContextReply, ContextRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_cli.embedded import start_nats, stop_all
from voxbus_cli.load_report import percentile as pct

SUBJECTS = {"raw nats-py": "bench.rpc.raw", "faststream": "bench.rpc.fs",
            "faststream, apply_types=False": "bench.rpc.fs-plain"}
CONCURRENCY = 32


def reply_bytes(request: bytes) -> bytes:
    asked = ContextRequest()
    asked.ParseFromString(request)
    return ContextReply(meta=asked.meta, messages=[
        ChatMessage(role="user" if i % 2 else "assistant",
                    content=f"turn {i}: a sentence of the conversation so far, as said")
        for i in range(10)]).SerializeToString()


async def serve(url: str) -> None:
    """The responder: one raw subscription and two faststream subscribers."""
    from faststream.nats import NatsBroker

    nc = await nats.connect(url)

    async def raw(msg: Any) -> None:
        await msg.respond(reply_bytes(msg.data))

    await nc.subscribe(SUBJECTS["raw nats-py"], queue="memory", cb=raw)
    # (logger=None: faststream otherwise logs every message at INFO, as voxbus would not)
    typed, plain = NatsBroker(url, logger=None), NatsBroker(url, apply_types=False, logger=None)

    @typed.subscriber(SUBJECTS["faststream"], queue="memory")
    async def answer(body: bytes) -> bytes:
        return reply_bytes(body)

    @plain.subscriber(SUBJECTS["faststream, apply_types=False"], queue="memory")
    async def answer_plain(body: bytes) -> bytes:
        return reply_bytes(body)

    await typed.start()
    await plain.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, responder: int, requests: int) -> dict[str, Any]:
    nc = await nats.connect(url)
    request = ContextRequest(meta=Meta(call_id="c1", turn_id=3),
                             max_messages=20).SerializeToString()
    results: dict[str, Any] = {}
    try:
        for name, subject in SUBJECTS.items():
            for _ in range(200):  # warm up
                await nc.request(subject, request, timeout=5)
            samples, cpu0 = [], cpu_s(responder)
            for _ in range(requests):
                started = time.perf_counter()
                await nc.request(subject, request, timeout=5)
                samples.append((time.perf_counter() - started) * 1e6)
            cpu_us = (cpu_s(responder) - cpu0) * 1e6 / requests

            async def client(n: int, subject: str = subject) -> None:
                for _ in range(n):
                    await nc.request(subject, request, timeout=10)
            started = time.perf_counter()
            await asyncio.gather(*(client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
            rate = (requests // CONCURRENCY) * CONCURRENCY / (time.perf_counter() - started)
            results[name] = {"p50_us": round(pct(samples, 50) or 0), "p99_us": round(
                pct(samples, 99) or 0), "responder_cpu_us": round(cpu_us),
                "requests_per_s": round(rate)}
            print(name, results[name], flush=True)
    finally:
        await nc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_nats(Path(tmp) / "nats")
        responder = subprocess.Popen([sys.executable, "-m", "bench.rpc_cost", "--serve", url],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert responder.stdout is not None
            while responder.stdout.readline() not in ("ready\n", ""):
                pass
            results = asyncio.run(measure(url, responder.pid, args.requests))
        finally:
            responder.terminate()
            responder.wait(10)
            stop_all([server])
    out = ROOT / "bench" / "results" / f"rpc-cost-{time.strftime('%Y%m%d')}.json"
    out.write_text(json.dumps({
        "benchmark": "request/reply: faststream vs raw nats-py",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {"cpus": os.cpu_count()}, "requests": args.requests,
        "concurrency": CONCURRENCY, "payload": "ContextRequest -> ContextReply (10 messages)",
        "results": results}, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
