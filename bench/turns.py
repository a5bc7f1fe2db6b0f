"""Turn-taking evaluation at audio level: scripted callers over the Twilio edge speak to
`make run`'s restaurant agent (the embedded models) and meet its turn-taking as a caller
does. The same calls go to voxbus with VAD-only endpointing, to voxbus with the end-of-turn
model (the default), and to Pipecat 1.14 with its default smart-turn, in one run.

    python -m bench.turns [--systems voxbus-model,voxbus-vad,pipecat] [--kinds ...]

Cases (bench/turn_cases.py): numbers, card numbers, addresses, dates and lists dictated with
0.7-0.9 s pauses; hesitations; short complete questions; real clips from speech/;
backchannels, real interruptions and the agent's own echo over its answer; interrupting the
greeting. Figures and their definitions: bench/turn_metrics.py, docs/conversation.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.turn_calls import Script, place
from bench.turn_cases import CallerVoices, Case, all_cases, real_pcm
from bench.turn_metrics import (
    call_figures,
    operating_points,
    shipped_point,
    summarize,
    sweep,
    vad_sweep,
)
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.config import Settings

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agents" / "restaurant" / "agent.yaml"
SYSTEMS = {"voxbus-model": {"VOXBUS_END_OF_TURN": "model"},
           "voxbus-vad": {"VOXBUS_END_OF_TURN": "vad"}}
TURN_KINDS = ("dictation", "hesitation", "question", "real")


def render(cases: list[Case]) -> dict[str, Script]:
    voices = CallerVoices()
    scripts = {}
    for case in cases:
        if case.kind == "real":
            parts = [real_pcm(case.parts[0])]
        else:
            parts = [voices.pcm(text, case.voice) for text in case.parts]
        over = voices.pcm(case.over_agent, case.voice) if case.over_agent else b""
        scripts[case.name] = Script(parts, case.pauses, over, case.during_greeting,
                                    echo=case.kind == "echo")
    return scripts


def joined(script: Script) -> bytes:
    """The caller's whole speech with its pauses (for the offline and Pipecat runs)."""
    out = bytearray()
    for part, pause in zip(script.parts, script.pauses, strict=True):
        out += part + b"\x00\x00" * int(pause * 16000)
    return bytes(out)


def eot_bench(cases: list[Case], scripts: dict[str, Script]) -> dict[str, Any]:
    from bench.turn_pauses import PauseJudge

    judge = PauseJudge(Settings())
    audio, words = [], []
    for case in cases:
        if case.kind in TURN_KINDS:
            a, w = judge.pauses(joined(scripts[case.name]))
            audio += a
            words += w
    s = Settings()
    point = s.eot_ask_after_ms / 1000
    shipped = (s.eot_threshold, s.eot_min_silence_ms / 1000, s.eot_hold_ms / 1000, point)
    return {
        "holds": sum(p.label == "hold" for p in audio),
        "eots": sum(p.label == "eot" for p in audio),
        "score_point_s": point,
        "vad_only": operating_points(vad_sweep(audio)),
        "smart_turn": operating_points(sweep(audio, point)),
        "smart_turn_and_words": operating_points(sweep(words, point)),
        "as_shipped": {"smart_turn": shipped_point(audio, *shipped),
                       "smart_turn_and_words": shipped_point(words, *shipped),
                       # a threshold no score reaches: every pause ends at the hangover
                       "vad_only": shipped_point(audio, 2.0, 0.0, s.vad_hangover_ms / 1000,
                                                 point)},
    }


async def run_voxbus(stack: Stack, cases: list[Case], scripts: dict[str, Script],
                     tag: str) -> list[dict[str, Any]]:
    url = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    rows = []
    for n, case in enumerate(cases):
        sid = f"CA{tag}{n:04d}{int(time.time() * 1000) % 10**8:08d}"
        timeline = await place(url, stack.nats_url, sid, scripts[case.name])
        row = {"case": case.name, "kind": case.kind, **call_figures(case.kind, timeline)}
        rows.append(row)
        print(f"  {case.name:<32} premature {row.get('premature', '-')} "
              f"v2v {row.get('voice_to_voice_ms')} reaction {row.get('reaction_ms', '-')} "
              f"eot {row['end_of_turn']} {row['error']}", flush=True)
    return rows


def voxbus_system(name: str, cases: list[Case], scripts: dict[str, Script]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs",
                      env={"VOXBUS_AGENT_FILE": str(AGENT), **SYSTEMS[name]})
        with stack.running(timeout_s=240):
            warm = [c for c in cases if c.kind == "question"][:1]  # models warm, caches filled
            asyncio.run(run_voxbus(stack, warm, scripts, "warm"))
            rows = asyncio.run(run_voxbus(stack, cases, scripts, name[-3:]))
    return {"summary": summarize(rows), "calls": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--systems", default="voxbus-model,voxbus-vad,pipecat")
    parser.add_argument("--kinds", default="", help="only these case kinds (comma-separated)")
    parser.add_argument("--real", type=int, default=12, help="real clips from speech/")
    parser.add_argument("--no-eot-bench", dest="eot", action="store_false")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cases = all_cases(args.real)
    if args.kinds:
        cases = [c for c in cases if c.kind in args.kinds.split(",")]
    started = time.time()
    scripts = render(cases)
    report: dict[str, Any] = {
        "benchmark": "turns", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "agent": str(AGENT.relative_to(ROOT)), "edge": "twilio (μ-law 8 kHz media stream)",
        "cases": {c.name: {"kind": c.kind, "parts": c.parts, "pauses": c.pauses,
                           "voice": c.voice, "over_agent": c.over_agent} for c in cases},
        "systems": {}}
    if args.eot:
        report["eot_bench"] = eot_bench(cases, scripts)
        print(json.dumps(report["eot_bench"], indent=2), flush=True)
    for system in filter(None, args.systems.split(",")):
        print(f"== {system}", flush=True)
        if system == "pipecat":
            from bench.turns_pipecat import run_pipecat

            report["systems"][system] = run_pipecat(
                [c for c in cases if c.kind in TURN_KINDS], scripts, joined)
        else:
            report["systems"][system] = voxbus_system(system, cases, scripts)
        print(json.dumps(report["systems"][system]["summary"], indent=2), flush=True)
    out = args.out or ROOT / "bench" / "results" / f"turns-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
