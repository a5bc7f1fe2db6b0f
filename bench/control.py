"""Control API latency: gRPC round trips on live calls, through the gateway that receives the
request, NATS, and the gateway that owns the call (docs/control.md). Real services and
nats-server with instant test models; two gateways, so half the commands cross replicas.

    python -m bench.control [--calls 10] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.voice_to_voice import ROOT
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus_cli.embedded import free_port, spawn, stop_all
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.stack import Stack, ping_services
from voxbus_testkit.instant import instant_env
from voxbus_testkit.live_call import LiveCall


async def timed(rounds: int, call: Any) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float | None]:
    return {"p50": pct(samples, 50), "p95": pct(samples, 95), "p99": pct(samples, 99)}


async def measure(stack: Stack, second_gateway: str, calls: int,
                  rounds: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (await ping_services(stack.nats_url)).get("gateway", 0) < 2:  # (0.3 s per ping)
        if time.monotonic() > deadline:
            raise RuntimeError("the second gateway did not come up")
    async with stack.control_channel() as channel:
        control = ControlStub(channel)
        lives = [LiveCall(url) for url in ([stack.gateway_url, second_gateway] * calls)[:calls]]
        for live in lives:
            await live.__aenter__()
        try:
            local, remote = lives[0].call_id, lives[1].call_id
            result: dict[str, Any] = {
                "get_call_same_gateway_ms": summary(await timed(rounds, lambda: control.GetCall(
                    pb.GetCallRequest(call_id=local)))),
                "get_call_other_gateway_ms": summary(await timed(
                    rounds, lambda: control.GetCall(pb.GetCallRequest(call_id=remote)))),
                "inject_other_gateway_ms": summary(await timed(rounds, lambda: control.Inject(
                    pb.InjectRequest(call_id=remote, text="bench note")))),
                "list_calls_ms": summary(await timed(max(10, rounds // 10),
                                                     lambda: control.ListCalls(
                                                         pb.ListCallsRequest()))),
            }
            listed = await control.ListCalls(pb.ListCallsRequest())
            result["listed_calls"] = len(listed.calls)
            return result
        finally:
            for live in lives:
                await live.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {**instant_env(), "PYTHONPATH": str(ROOT)}
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs",
                      control_port=free_port(), env=env)
        with stack.running():
            port = free_port()
            gw_env = {**stack.service_env(), "VOXBUS_GATEWAY_PORT": str(port),
                      "VOXBUS_AUDIOSOCKET_PORT": "0", "VOXBUS_METRICS_PORT": "0"}
            with (Path(tmp) / "logs" / "gateway-2.log").open("ab") as log:
                second = spawn([sys.executable, "-m", "voxbus_gateway"], env=gw_env, log=log)
                try:
                    result = asyncio.run(measure(stack, f"ws://127.0.0.1:{port}/v1/pcm",
                                                 args.calls, args.rounds))
                finally:
                    stop_all([second])
    report = {"benchmark": "control", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "calls": args.calls, "rounds": args.rounds, "summary": result}
    out = args.out or ROOT / "bench" / "results" / f"control-{time.strftime('%Y%m%d')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
