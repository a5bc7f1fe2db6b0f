"""SIP/RTP edge benchmark: real calls from sipp through a media relay to the full stack with
the embedded models. For each clip and network condition it reports the STT word error rate
and the latency from RTP in to RTP out (the caller's last voiced packet leaving the relay to
the agent's first RTP packet reaching it), so loss and jitter are measured against a clean
call over the same path.

    python -m bench.sip [--clips N] [--out bench/results/sip-YYYYMMDD.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from bench.wer import word_errors
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus.v1.memory_pb2 import Session
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.speech_end import last_speech_frame
from voxbus_cli.stack import Stack
from voxbus_common.session_pages import read_session
from voxbus_common.subjects import SESSIONS_BUCKET
from voxbus_testkit.sip_peer import (
    RELAY_IP,
    Impairment,
    MediaRelay,
    free_port_range,
    scenario,
    start_sipp,
    write_clip,
)

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "speech"
PORTS = 8
CONDITIONS = {
    "clean": Impairment(),
    "loss5_reorder5_jitter40": Impairment(loss=0.05, reorder=0.05, jitter_ms=40.0),
    "loss10_jitter60": Impairment(loss=0.10, jitter_ms=60.0),
}


async def session_of(nc: Any, call_id: str) -> Session:
    kv = await nc.jetstream().key_value(SESSIONS_BUCKET)
    try:
        return await read_session(kv, call_id) or Session()
    except Exception:  # not written yet
        return Session()


async def one_call(stack: Stack, sip_port: int, base: int, clip: dict[str, str],
                   impairment: Impairment, workdir: Path) -> dict[str, Any]:
    pcm = load_wav(SPEECH / clip["file"])
    ulaw = write_clip(pcm, workdir / "clip.ulaw", trailing_silence_s=3.0)
    end_frame = last_speech_frame(pcm)
    nc = await nats.connect(stack.nats_url)
    async with MediaRelay(base, PORTS, impairment) as relay:
        # a new number per call: a repeat caller's notes would lengthen every prompt
        caller = f"+1555{time.time_ns() % 10**7:07d}"
        proc = start_sipp(scenario(workdir, ulaw, "agent", dtmf=False, caller=caller), sip_port,
                          workdir)
        call_id = f"1-{proc.pid}_127_0_0_1"
        deadline = time.monotonic() + 120
        latency_ms = None
        while time.monotonic() < deadline and proc.poll() is None:
            await asyncio.sleep(0.1)
            if len(relay.caller_packets) <= end_frame:
                continue
            speech_end = relay.caller_packets[end_frame][0]
            after = [t for t, _ in relay.agent_packets if t > speech_end]
            if len(after) >= 25:  # half a second of the answer has arrived
                talking = any(speech_end - 3.0 < t <= speech_end for t, _ in relay.agent_packets)
                if not talking:  # else it answers an earlier pause in the clip: no measure
                    latency_ms = round((after[0] - speech_end) * 1000)
                break
        gateway_v2v = None
        async with stack.control_channel() as channel:
            control = ControlStub(channel)
            stages: dict[str, float] = {}
            for _ in range(150):  # the turn is logged once its answer has played out
                info = await control.GetCall(pb.GetCallRequest(call_id=call_id))
                answered = [t for t in info.turns if "voice_to_voice" in t.latency_ms]
                if answered:  # the gateway's own measure: from the last voiced frame on the bus
                    stages = {k: round(v) for k, v in answered[0].latency_ms.items()}
                    gateway_v2v = stages["voice_to_voice"]
                    break
                await asyncio.sleep(0.2)
            await control.EndCall(pb.EndCallRequest(call_id=call_id, reason="bench"))
        await asyncio.to_thread(proc.wait, 60)
    for _ in range(100):
        session = await session_of(nc, call_id)
        if session.ended_unix_ns:
            break
        await asyncio.sleep(0.1)
    await nc.close()
    heard = " ".join(t.text for t in session.turns if t.role == "user")
    edits, n = word_errors(clip["transcript"], heard)
    return {"clip": clip["id"], "word_edits": edits, "ref_words": n, "heard": heard,
            "rtp_in_to_rtp_out_ms": latency_ms, "gateway_voice_to_voice_ms": gateway_v2v,
            "gateway_stages_ms": stages,
            "dropped": relay.dropped,
            "reordered": relay.reordered, "sipp_rc": proc.returncode}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [r["rtp_in_to_rtp_out_ms"] for r in rows if r["rtp_in_to_rtp_out_ms"]]
    gateway = [r["gateway_voice_to_voice_ms"] for r in rows if r["gateway_voice_to_voice_ms"]]
    return {"gateway_voice_to_voice_ms": {"p50": pct(gateway, 50), "p95": pct(gateway, 95)},
            "wer": round(sum(r["word_edits"] for r in rows)
                         / max(1, sum(r["ref_words"] for r in rows)), 4),
            "rtp_in_to_rtp_out_ms": {"p50": pct(latencies, 50), "p95": pct(latencies, 95),
                                     "n": len(latencies)},
            "calls": len(rows), "sipp_failures": sum(1 for r in rows if r["sipp_rc"] != 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=12, help="the N shortest clips")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    args = parser.parse_args()
    with (SPEECH / "manifest.tsv").open() as f:
        clips = sorted(csv.DictReader(f, delimiter="\t"), key=lambda c: float(c["seconds"]))
    clips = clips[: args.clips]
    base, sip_port = free_port_range(PORTS), free_port()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs",
                      control_port=free_port(),
                      env={"VOXBUS_SIP_PORT": str(sip_port), "VOXBUS_SIP_MEDIA_ADDRESS": RELAY_IP,
                           "VOXBUS_SIP_RTP_PORT_MIN": str(base),
                           "VOXBUS_SIP_RTP_PORT_MAX": str(base + PORTS - 1)})
        with stack.running(timeout_s=240):
            for name in args.conditions.split(","):
                impairment = CONDITIONS[name]
                rows = []
                for clip in clips:
                    row = asyncio.run(one_call(stack, sip_port, base, clip, impairment,
                                               Path(tmp)))
                    rows.append(row)
                    print(f"{name:<26} {clip['id']:<36} WER {row['word_edits']}/"
                          f"{row['ref_words']:<3} RTP in->out {row['rtp_in_to_rtp_out_ms']} ms "
                          f"(gateway {row['gateway_stages_ms']})",
                          flush=True)
                results[name] = {"summary": summarize(rows), "calls": rows}
    report = {"benchmark": "sip", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "machine": {"cpus": os.cpu_count()},
              "conditions": {k: vars(v) for k, v in CONDITIONS.items()}, "results": results}
    out = args.out or ROOT / "bench" / "results" / f"sip-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v["summary"] for k, v in results.items()}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
