"""Figures of the turn-taking evaluation, from what the scripted callers met (turn_calls.py)
and, for the eot-bench comparison, from the pauses of their speech judged offline.

As a caller meets them (one run, the policy as shipped):
- premature answer: agent audio that starts before the caller's last part has ended; a
  hold pause is cut off when agent audio starts after it and before the next part ends;
- voice-to-voice: from the last voiced 20 ms frame of the caller's last part to the first
  agent audio after it, at the caller;
- barge-in reaction: from the first voiced frame of speech over the agent to the carrier's
  `clear` at the caller; missed when no clear came within 2 s; a false barge-in is an agent
  turn a backchannel or the agent's own echo cut off.

eot-bench (livekit/eot-bench, its definitions): per pause inside a turn ("hold", 0.2-5 s) and
per true end ("eot"), the end-of-turn score when the policy decides; a policy (threshold θ,
action delay a, timeout T) cuts a hold off when it fires before the pause is over, and its
latency on an eot is when it fires (T when it never does). "False cut-offs with 300/600 ms
allowed" is the lowest cut-off rate of any policy whose mean latency is at most that;
"dead air at 5/10 %" the lowest mean latency of any policy with at most that cut-off rate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.turn_calls import Timeline
from voxbus_cli.load_report import percentile as pct

MISSED_AFTER_S = 2.0


def bursts(times: list[float], gap_s: float = 0.3) -> list[tuple[float, float]]:
    """Agent audio as (start, end) stretches: frames closer than `gap_s` belong together."""
    out: list[tuple[float, float]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= gap_s:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def call_figures(kind: str, t: Timeline) -> dict[str, Any]:
    """What one scripted call met (all times relative to the caller's clock)."""
    after_greeting = [m for m in t.media_times if m > t.greeting_end] if t.greeting_end else []
    stretches = bursts(after_greeting)
    ends = [e for e in t.seg_ends if e]
    last = ends[-1] if ends else None
    out: dict[str, Any] = {"error": t.error}
    if last is not None:
        early = [s for s, _ in stretches if last is not None and s < last]
        out["premature"] = len(early)
        out["holds"] = len(ends) - 1
        out["cut_holds"] = sum(
            any(ends[i] < s <= ends[i + 1] for s, _ in stretches) for i in range(len(ends) - 1))
        answer = next((s for s, _ in stretches if last is not None and s > last), None)
        out["voice_to_voice_ms"] = (round((answer - last) * 1000, 1)
                                    if answer is not None and last is not None else None)
    if t.over_start is not None:
        clears = [c for c in t.clears if c >= t.over_start - 0.05]
        reaction = clears[0] - t.over_start if clears else None
        out["reaction_ms"] = (round(reaction * 1000, 1)
                              if reaction is not None and reaction <= MISSED_AFTER_S else None)
    turns = [e for e in t.events if e.get("type") == "turn"]
    out["interrupted_turns"] = [e["turn"] for e in turns if e.get("interrupted")]
    answered = [e for e in turns if e.get("user_text") and e.get("latency_ms", {}).get(
        "voice_to_voice") is not None]
    out["gateway_latency_ms"] = answered[-1]["latency_ms"] if answered else {}
    out["greeting_interrupted"] = any(e.get("turn") == 1 and e.get("interrupted") for e in turns)
    out["end_of_turn"] = [e.get("end_of_turn", "") for e in t.events
                          if e.get("type") == "transcript" and e.get("final")]
    out["barge_ins"] = [e.get("phase") for e in t.events if e.get("type") == "barge_in"]
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the calls of one system."""
    def of(*kinds: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["kind"] in kinds]

    holds = sum(r.get("holds", 0) for r in of("dictation", "hesitation"))
    cut = sum(r.get("cut_holds", 0) for r in of("dictation", "hesitation"))
    v2v = [r["voice_to_voice_ms"] for r in of("question", "real", "dictation", "hesitation",
                                              "backchannel", "echo")
           if r.get("voice_to_voice_ms") is not None and not r.get("premature")]
    quick = [r["voice_to_voice_ms"] for r in of("question", "real", "backchannel", "echo")
             if r.get("voice_to_voice_ms") is not None and not r.get("premature")]
    reactions = [r["reaction_ms"] for r in of("interruption") if r.get("reaction_ms")]
    greeting = [r for r in of("interruption") if r["case"].startswith("greeting")]
    return {
        "calls": len(rows),
        "errors": [f"{r['case']}: {r['error']}" for r in rows if r.get("error")],
        "premature_answers": {k: sum(r.get("premature", 0) for r in of(k))
                              for k in ("dictation", "hesitation", "real", "question")},
        "false_cutoff_rate": round(cut / holds, 4) if holds else None,
        "hold_pauses": holds,
        "voice_to_voice_ms": {"p50": pct(v2v, 50), "p95": pct(v2v, 95), "n": len(v2v),
                              "mean": round(statistics.fmean(v2v), 1) if v2v else None},
        "voice_to_voice_quick_turns_ms": {"p50": pct(quick, 50), "p95": pct(quick, 95),
                                          "n": len(quick)},
        "barge_in_reaction_ms": {"p50": pct(reactions, 50), "p95": pct(reactions, 95),
                                 "n": len(reactions)},
        "missed_interruptions": sum(1 for r in of("interruption") if r.get("reaction_ms") is None),
        "interruptions": len(of("interruption")),
        "greeting_interrupted": sum(1 for r in greeting if r.get("greeting_interrupted")),
        "greeting_interruptions": len(greeting),
        "false_barge_ins": sum(1 for r in of("backchannel", "echo") if r["interrupted_turns"]),
        "backchannel_and_echo_calls": len(of("backchannel", "echo")),
    }


# -- eot-bench -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    label: str  # hold | eot
    seconds: float  # how long the silence lasted (eot: until the caller would give up)
    score: float  # end-of-turn probability when the policy decides (its score point)


def _split(pauses: list[Pause]) -> tuple[list[Pause], list[Pause]]:
    return ([p for p in pauses if p.label == "hold" and 0.2 <= p.seconds <= 5.0],
            [p for p in pauses if p.label == "eot"])


def _evaluate(holds: list[Pause], eots: list[Pause], theta: float, delay_s: float,
              timeout_s: float, score_point_s: float) -> tuple[float, float]:
    """(cut-off rate, mean latency s) of one policy: end the turn at max(delay, score point)
    of silence when the score is above theta, else at the timeout."""
    def act(p: Pause) -> float | None:
        return max(delay_s, score_point_s) if p.score > theta else None

    cut = sum(1 for h in holds if ((f := act(h)) is not None and h.seconds > f)
              or h.seconds > timeout_s) / len(holds)
    lat = statistics.fmean(
        f if (f := act(e)) is not None and f <= timeout_s else timeout_s for e in eots)
    return cut, lat


def sweep(pauses: list[Pause], score_point_s: float) -> list[tuple[float, float]]:
    """(cut-off rate, mean latency s) of every policy of eot-bench's grid, scored once at
    `score_point_s` of silence."""
    holds, eots = _split(pauses)
    if not holds or not eots:
        return []
    out = []
    delays = sorted({round(score_point_s, 2), *(round(0.2 + 0.1 * i, 1) for i in range(9))})
    for theta in (i / 100 for i in range(101)):
        for a in delays:
            for timeout in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5):
                if timeout >= a:
                    out.append(_evaluate(holds, eots, theta, a, timeout, score_point_s))
    return out


def shipped_point(pauses: list[Pause], theta: float, min_silence_s: float, hold_s: float,
                  score_point_s: float) -> dict[str, float | None]:
    """The policy as configured (threshold, minimum silence, the hold as its timeout)."""
    holds, eots = _split(pauses)
    if not holds or not eots:
        return {"false_cutoff_rate": None, "mean_delay_ms": None}
    cut, lat = _evaluate(holds, eots, theta, min_silence_s, hold_s, score_point_s)
    return {"false_cutoff_rate": round(cut, 4), "mean_delay_ms": round(lat * 1000)}


def vad_sweep(pauses: list[Pause]) -> list[tuple[float, float]]:
    """A silence timeout d, as eot-bench's VAD baseline: cut-off iff the hold is longer."""
    holds = [p for p in pauses if p.label == "hold" and 0.2 <= p.seconds <= 5.0]
    if not holds:
        return []
    return [(sum(h.seconds > d for h in holds) / len(holds), d)
            for d in (0.2 + 0.01 * i for i in range(481))]


def operating_points(curve: list[tuple[float, float]]) -> dict[str, float | None]:
    def best_cut(budget: float) -> float | None:
        feasible = [c for c, lat in curve if lat <= budget + 1e-9]
        return round(min(feasible), 4) if feasible else None

    def best_latency(budget: float) -> float | None:
        feasible = [lat for c, lat in curve if c <= budget + 1e-9]
        return round(min(feasible) * 1000) if feasible else None

    return {"false_cutoffs_at_300ms": best_cut(0.3), "false_cutoffs_at_600ms": best_cut(0.6),
            "dead_air_ms_at_5pct": best_latency(0.05), "dead_air_ms_at_10pct": best_latency(0.10)}
