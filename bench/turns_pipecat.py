"""Pipecat 1.14 with its default turn-taking (Silero VAD with default parameters, smart-turn
v3.2) on the turn-taking evaluation's caller speech (bench/turns.py), for the ratio.

Pipecat runs in .venv-pipecat (bench/pipecat/run_pipecat.py --turn smart-turn) on the same
local models as voxbus and the restaurant agent's instructions as its system prompt. Its
caller pushes 16 kHz frames straight into the pipeline (Pipecat has no Twilio-edge test
client here), so its figures carry no carrier or network hop: a lower bound on what a
caller would meet. Each case is one fresh conversation; the times of every reply audio frame
and of each part's last speech frame give the same figures as voxbus's calls
(bench/turn_metrics.call_figures): premature answers, cut-off holds, voice-to-voice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.pipecat_side_by_side import run_pipecat as run_runner
from bench.turn_calls import Script, Timeline
from bench.turn_cases import Case
from bench.turn_metrics import call_figures, summarize
from voxbus_cli.speech_end import last_speech_frame
from voxbus_common.agent import load_agent
from voxbus_common.audio import frame_bytes

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agents" / "restaurant" / "agent.yaml"
RATE = 16000


def part_end_frames(script: Script) -> list[int]:
    """Index, in the joined audio, of the last voiced 20 ms frame of each part."""
    ends, offset = [], 0
    for part, pause in zip(script.parts, script.pauses, strict=True):
        last = last_speech_frame(part)
        ends.append(offset // frame_bytes(RATE) + max(0, last))
        offset += len(part) + 2 * int(pause * RATE)
    return ends


def run_pipecat(cases: list[Case], scripts: dict[str, Script],
                joined: Callable[[Script], bytes]) -> dict[str, Any]:
    prompt = load_agent(str(AGENT)).instructions.strip()
    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        for case in cases:
            path = Path(tmp) / f"{case.name}.pcm"
            path.write_bytes(joined(scripts[case.name]))
            ends = part_end_frames(scripts[case.name])
            clips.append({"id": case.name, "pcm": str(path), "speech_end_frame": ends[-1],
                          "part_end_frames": ends})
        results = run_runner(clips, Path(tmp), "WARNING", system_prompt=prompt,
                             extra=("--turn", "smart-turn"))
    kinds = {c.name: c.kind for c in cases}
    rows = []
    for r in results:
        timeline = Timeline(seg_ends=r["part_ends_s"], media_times=r["audio_s"],
                            greeting_end=1e-9,  # Pipecat says no greeting here
                            error="; ".join(r["errors"]))
        row = {"case": r["clip"], "kind": kinds[r["clip"]],
               **call_figures(kinds[r["clip"]], timeline), "stt_text": r["stt_text"]}
        rows.append(row)
        print(f"  {row['case']:<32} premature {row.get('premature', '-')} "
              f"v2v {row.get('voice_to_voice_ms')} {row['error']}", flush=True)
    return {"summary": summarize(rows), "calls": rows,
            "setup": "pipecat-ai 1.14.0: SileroVADAnalyzer() defaults + LocalSmartTurnAnalyzerV3 "
                     "(the user aggregator's default stop strategy); no carrier edge"}
