"""Whisper tiny.en on speech/: word error rate and decode time, the 30 s window against the
short window (voxbus_stt/whisper.py), one decode at a time, warm.

    python -m bench.stt_wer [--threads 1] [--out bench/results/stt_wer-YYYYMMDD.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

from bench.wer import word_errors
from voxbus_cli.caller import load_wav
from voxbus_cli.load_report import percentile as pct
from voxbus_stt.whisper import WhisperSpeechToText

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "speech"


def measure(stt: WhisperSpeechToText, clips: list[dict[str, str]]) -> dict[str, Any]:
    edits = words = 0
    short: list[float] = []
    long: list[float] = []
    rows = []
    for clip in clips:
        pcm = load_wav(SPEECH / clip["file"])
        stt.transcribe(pcm[:32000], 16000)  # (warm the path)
        started = time.perf_counter()
        text = stt.transcribe(pcm, 16000)
        ms = (time.perf_counter() - started) * 1000
        (short if float(clip["seconds"]) <= 3.0 else long).append(ms)
        e, n = word_errors(clip["transcript"], text)
        edits, words = edits + e, words + n
        rows.append({"clip": clip["id"], "ms": round(ms, 1), "edits": e, "words": n,
                     "text": text})
    return {"wer": round(edits / words, 4), "edits": edits, "words": words,
            "decode_ms_up_to_3s": {"p50": pct(short, 50), "p95": pct(short, 95),
                                   "n": len(short)},
            "decode_ms_longer": {"p50": pct(long, 50), "p95": pct(long, 95), "n": len(long)},
            "clips": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with (SPEECH / "manifest.tsv").open() as f:
        clips = list(csv.DictReader(f, delimiter="\t"))
    report: dict[str, Any] = {"benchmark": "stt_wer", "date": time.strftime("%Y-%m-%d %H:%M"),
                              "threads": args.threads}
    for name, short in (("window_30s", False), ("short_window", True)):
        result = measure(WhisperSpeechToText(threads=args.threads, short_window=short), clips)
        report[name] = result
        print(f"{name:<13} WER {result['wer']:.2%}  decode ≤3 s p50 "
              f"{result['decode_ms_up_to_3s']['p50']} ms, longer p50 "
              f"{result['decode_ms_longer']['p50']} ms", flush=True)
    out = args.out or ROOT / "bench" / "results" / f"stt_wer-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
