"""What a routing rule saves: the same clips spoken to two gateways on one stack, one that
sends every turn to the LLM and one whose routes file answers every turn with fixed text
(docs/routing.md). Paired per clip, so the difference is the LLM path alone.

    python -m bench.routing [--clips N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.voice_to_voice import ROOT, SPEECH
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.embedded import free_port, spawn, stop_all
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.stack import Stack, ping_services

SAY = "Thanks for calling. We are open from noon to ten, every day."
ROUTES = f'routes:\n  - name: everything\n    regex: "\\\\w"\n    say: "{SAY}"\n'


async def voice_to_voice(url: str, pcm: bytes) -> float | None:
    result = await place_call(url, pcm, timeout_s=120)
    answered = [t for t in result.turns if not t["interrupted"]]
    return answered[0]["latency_ms"].get("voice_to_voice") if answered else None


async def wait_for_gateways(nats_url: str, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded readiness poll of separate processes
        if (await ping_services(nats_url, wait_s=0.5)).get("gateway", 0) >= count:
            return
    raise RuntimeError("the routed gateway did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with (SPEECH / "manifest.tsv").open() as f:
        clips = sorted(csv.DictReader(f, delimiter="\t"), key=lambda c: float(c["seconds"]))
    clips = clips[: args.clips]  # the shortest clips: one utterance each
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(ROUTES)
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs")
        stack.start()
        routed_port = free_port()
        env = stack.service_env()
        env.update({"VOXBUS_GATEWAY_PORT": str(routed_port), "VOXBUS_AUDIOSOCKET_PORT": "0",
                    "VOXBUS_METRICS_PORT": "0", "VOXBUS_ROUTES_FILE": str(routes)})
        log = (Path(tmp) / "gateway-routed.log").open("ab")
        routed_gw = spawn([sys.executable, "-m", "voxbus_gateway"], env=env, log=log)
        try:
            stack.wait_ready()
            asyncio.run(wait_for_gateways(stack.nats_url, 2))
            routed_url = f"ws://127.0.0.1:{routed_port}/v1/pcm"
            asyncio.run(voice_to_voice(stack.gateway_url, load_wav(SPEECH / clips[0]["file"])))
            for clip in clips:
                pcm = load_wav(SPEECH / clip["file"])
                llm = asyncio.run(voice_to_voice(stack.gateway_url, pcm))
                rule = asyncio.run(voice_to_voice(routed_url, pcm))
                rows.append({"clip": clip["id"], "llm_ms": llm, "routed_ms": rule})
                print(f"{clip['id']:<32} LLM {llm} ms, routed {rule} ms", flush=True)
        finally:
            stop_all([routed_gw])
            log.close()
            stack.stop()
    pairs = [(r["llm_ms"], r["routed_ms"]) for r in rows if r["llm_ms"] and r["routed_ms"]]
    saved = [a - b for a, b in pairs]
    report = {"benchmark": "routing", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "summary": {"pairs": len(pairs),
                          "llm_voice_to_voice_ms": {"p50": pct([a for a, _ in pairs], 50)},
                          "routed_voice_to_voice_ms": {"p50": pct([b for _, b in pairs], 50)},
                          "saved_ms": {"p50": pct(saved, 50), "p95": pct(saved, 95)}},
              "clips": rows}
    out = args.out or ROOT / "bench" / "results" / f"routing-{time.strftime('%Y%m%d')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
