"""The README table from the newest results in bench/results/ (last step of `make bench`):
voice-to-voice per stage, the Pipecat ratio on the shared caller-side measure, barge-in,
routing, the tool round, capacity and the soak. Writes bench/results/summary.md and prints it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
STAGE_NAMES = {
    "end_of_speech_to_final_transcript": "end of speech → final transcript",
    "final_transcript_to_first_token": "final transcript → first LLM token",
    "first_token_to_first_audio_chunk": "first token → first TTS audio chunk",
    "first_audio_chunk_to_first_audio_played": "first audio chunk → first frame to the caller",
    "voice_to_voice": "**voice-to-voice** (gateway-measured)",
    "caller_voice_to_voice": "**voice-to-voice, caller side**",
}


def newest(kind: str, unless: str = "") -> dict[str, Any] | None:
    """The latest run of a kind by the date it records (a fresh checkout's files all have
    the same mtime), then by name (`-20261207b` after `-20261207`); names containing
    `unless` are another kind that shares the prefix."""
    runs = [(json.loads(f.read_text()), f.name) for f in RESULTS.glob(f"{kind}-*.json")
            if not unless or unless not in f.name]
    runs.sort(key=lambda run: (str(run[0].get("date", "")), run[1]))
    return runs[-1][0] if runs else None


def pipecat_version() -> str:
    pins = (RESULTS.parent / "pipecat" / "requirements.txt").read_text().splitlines()
    return next((line.split("==")[1] for line in pins if line.startswith("pipecat-ai")), "")


def hop(v: float) -> str:
    return "≥ 250" if v >= 250 else f"{v:.1f}"  # 250 ms is the top finite bucket


def fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def table() -> str:
    lines: list[str] = []
    v2v, pc = newest("voice_to_voice"), newest("pipecat")
    if v2v:
        m = v2v["machine"]
        lines += [f"Voice-to-voice, {v2v['date']} UTC, {m['cpus']} cores, Python {m['python']}, "
                  f"{v2v['summary']['clips']} clips, embedded models; STT WER "
                  f"{v2v['summary']['wer'] * 100:.1f}%:", "",
                  "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
        for key, name in STAGE_NAMES.items():
            s = v2v["summary"]["stages_ms"].get(key)
            if s:
                lines.append(f"| {name} | {fmt(s['p50'])} | {fmt(s['p95'])} |")
    if v2v and pc:
        ours = v2v["summary"]["stages_ms"].get("caller_voice_to_voice", {})
        theirs = pc["summary"]["voice_to_voice_ms"]
        if ours.get("p50") and theirs.get("p50"):
            lines += ["", f"Pipecat side by side ({pc['date']} UTC, same models, clips and "
                      "caller-side measure):", "",
                      "| system | p50 ms | p95 ms | STT WER |", "|---|---:|---:|---:|",
                      f"| voxbus (5 services over NATS) | {fmt(ours['p50'])} | "
                      f"{fmt(ours['p95'])} | {v2v['summary']['wer'] * 100:.1f}% |",
                      f"| Pipecat {pipecat_version()} (one process) | "
                      f"{fmt(theirs['p50'])} | {fmt(theirs['p95'])} | "
                      f"{pc['summary']['wer'] * 100:.1f}% |", "",
                      f"voxbus / Pipecat median ratio: **{ours['p50'] / theirs['p50']:.2f}**"]
    lines += turns_lines(newest("turns"), newest("stt_wer"))
    barge = newest("barge_in")
    if barge:
        r = barge.get("summary", barge).get("reaction_ms", {})
        if r:
            lines += ["", f"Barge-in reaction (onset → agent audio cleared): p50 "
                      f"{fmt(r.get('p50'))} ms, p95 {fmt(r.get('p95'))} ms."]
    routing = newest("routing")
    if routing:
        r = routing["summary"]
        lines += ["", f"Routing rule vs LLM, same {r['pairs']} clips (paired): voice-to-voice p50 "
                  f"{fmt(r['routed_voice_to_voice_ms']['p50'])} vs "
                  f"{fmt(r['llm_voice_to_voice_ms']['p50'])} ms; saved p50 "
                  f"{fmt(r['saved_ms']['p50'])} ms, p95 {fmt(r['saved_ms']['p95'])} ms."]
    tools = newest("tools")
    if tools:
        t, p = tools["summary"]["tool"], tools["summary"]["plain"]
        lines += ["", f"Tool round (webhook answering at once, instant STT/TTS, scripted model; "
                  f"{t['voice_to_voice_ms']['n']} + {p['voice_to_voice_ms']['n']} calls): "
                  f"voice-to-voice p50 {fmt(t['voice_to_voice_ms']['p50'])} vs "
                  f"{fmt(p['voice_to_voice_ms']['p50'])} ms without tools, p95 "
                  f"{fmt(t['voice_to_voice_ms']['p95'])} vs {fmt(p['voice_to_voice_ms']['p95'])}"
                  f" ms; the tool round adds "
                  f"{fmt(tools['summary']['tool_round_adds_ms']['voice_to_voice_p50'])} ms p50."]
    ctl = newest("control")
    if ctl:
        c = ctl["summary"]
        lines += ["", f"Control API ({ctl['rounds']} rounds, {ctl['calls']} live calls on 2 "
                  f"gateways): GetCall p50 {fmt(c['get_call_same_gateway_ms']['p50'])} ms on "
                  f"the owning gateway, {fmt(c['get_call_other_gateway_ms']['p50'])} ms across "
                  f"gateways (p99 {fmt(c['get_call_other_gateway_ms']['p99'])}); Inject across "
                  f"gateways p50 {fmt(c['inject_other_gateway_ms']['p50'])} ms; ListCalls p50 "
                  f"{fmt(c['list_calls_ms']['p50'])} ms (the 300 ms gather window)."]
    cap = newest("capacity")
    if cap:
        lines += ["", f"Capacity ({cap['date']} UTC, instant providers; overhead = "
                  "voice-to-voice − VAD hangover):", "",
                  "| calls | overhead p50 ms | overhead p99 ms | CPU (all procs) | "
                  "CPU ms per call·s | MB per call | bus hop p50 / p99 ms | timeouts |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for lv in cap["levels"]:
            o = lv["overhead_ms"]
            hops = [h for h in lv["bus_hop_ms"].values() if h.get("p50") is not None]
            slowest = (f"{hop(max(h['p50'] for h in hops))} / {hop(max(h['p99'] for h in hops))}"
                       if hops else "–")
            lines.append(f"| {lv['calls']} | {o['p50']} | {o['p99']} | "
                         f"{lv['cpu_percent_total']}% | {lv['cpu_ms_per_call_second']} | "
                         f"{lv['memory_mb_per_call']} | {slowest} | {lv['summary']['timeouts']} |")
        lines += ["", "Bus hop: the slowest message kind's publish → receive (docs/benchmarks.md). "
                  "Largest N with p99 overhead ≤ 25 ms: "
                  f"**{cap['largest_calls_within_p99_target']}**."]
    sip = newest("sip")
    if sip:
        lines += ["", f"SIP/RTP edge ({sip['date']} UTC, sipp through a relay, embedded models):",
                  "", "| network | STT WER | RTP in → RTP out p50 ms | p95 ms | gateway "
                  "voice-to-voice p50 ms |", "|---|---:|---:|---:|---:|"]
        for name, res in sip["results"].items():
            s, imp = res["summary"], sip["conditions"][name]
            label = (f"{imp['loss'] * 100:.0f}% loss, {imp['reorder'] * 100:.0f}% reordered, "
                     f"0–{imp['jitter_ms']:.0f} ms jitter") if any(imp[k] for k in (
                         "loss", "reorder", "jitter_ms")) else "clean"
            lines.append(f"| {label} | {s['wer'] * 100:.1f}% | "
                         f"{fmt(s['rtp_in_to_rtp_out_ms']['p50'])} | "
                         f"{fmt(s['rtp_in_to_rtp_out_ms']['p95'])} | "
                         f"{fmt(s['gateway_voice_to_voice_ms']['p50'])} |")
    soak = newest("soak")
    if soak:
        lines += ["", soak_line(soak)]
    for replicas in (3, 2):
        for failover in (newest(f"stt-failover-r{replicas}", unless="-40ms"),
                         newest(f"stt-failover-r{replicas}-40ms")):
            if failover is not None:
                lines += ["", failover_line(failover)]
    for kind in ("instant", "real"):
        if (leak := newest(f"leak-{kind}")) is not None:
            lines += ["", leak_line(leak)]
    return "\n".join(lines) + "\n"


def failover_line(run: dict[str, Any]) -> str:
    """STT kills at load: the added latency of the calls moved to survivors (issue 19)."""
    p, ph = run["parameters"], run["phases"]["kills"]
    pooled = ph.get("stt_failover_added_ms") or {}
    return (f"STT failover ({run['date']} UTC, {p['calls']} calls, {p['replicas']['stt']} STT "
            f"replicas, {p.get('bus_frame_ms', 20)} ms bus frames, {len(ph['kills'])} kills): "
            f"the moved calls' turns near a kill "
            f"added p50 {fmt(pooled.get('p50'))} / p95 {fmt(pooled.get('p95'))} ms over "
            f"{pooled.get('n', 0)} turns (target p95 ≤ 1000); {ph['lost_turns']} turns lost; "
            f"machine CPU {fmt(ph['cpu_pct_mean'].get('machine'))}% of 200%.")


def leak_line(run: dict[str, Any]) -> str:
    growth = run["growth"]
    parts = [f"{k} {g['growth_pct']:+.1f}%" for k, g in growth.items()]
    return (f"Leaks ({run['date']} UTC, {run['parameters']['calls']} calls, {run['models']}): "
            f"RSS after the warm-up → end " + ", ".join(parts) + " (target ≤ 1%); "
            f"problems {sum(run['problems'].values())}.")


def turns_lines(turns: dict[str, Any] | None, stt: dict[str, Any] | None) -> list[str]:
    """The turn-taking evaluation (bench/turns.py) and the STT decode path (bench/stt_wer.py)."""
    lines: list[str] = []
    if turns:
        systems = turns["systems"]
        lines += ["", f"Turn-taking ({turns['date']} UTC, scripted callers over the Twilio edge, "
                  f"{turns['agent']}):", "",
                  "| system | premature answers (dictation / hesitation / real / question) | "
                  "false cut-offs | v2v p50 ms | v2v p95 ms | barge-in p95 ms | "
                  "false barge-ins | missed interruptions |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, res in systems.items():
            s = res["summary"]
            pre = s["premature_answers"]
            rate = s["false_cutoff_rate"]
            lines.append(
                f"| {name} | {pre['dictation']} / {pre['hesitation']} / {pre['real']} / "
                f"{pre['question']} | {'–' if rate is None else f'{rate * 100:.0f}%'} | "
                f"{fmt(s['voice_to_voice_ms']['p50'])} | {fmt(s['voice_to_voice_ms']['p95'])} | "
                f"{fmt(s['barge_in_reaction_ms']['p95'])} | "
                f"{s['false_barge_ins'] if s['backchannel_and_echo_calls'] else '–'} | "
                f"{s['missed_interruptions'] if s['interruptions'] else '–'} |")
        eot = turns.get("eot_bench")
        if eot:
            lines += ["", f"eot-bench figures on the callers' pauses ({eot['holds']} holds, "
                      f"{eot['eots']} ends):", "",
                      "| policy | cut-offs @300 ms | cut-offs @600 ms | dead air @5% ms | "
                      "dead air @10% ms |", "|---|---:|---:|---:|---:|"]
            for key in ("vad_only", "smart_turn", "smart_turn_and_words"):
                p = eot[key]
                lines.append(
                    f"| {key.replace('_', ' ')} | {pct_or_dash(p['false_cutoffs_at_300ms'])} | "
                    f"{pct_or_dash(p['false_cutoffs_at_600ms'])} | "
                    f"{fmt(p['dead_air_ms_at_5pct'])} | {fmt(p['dead_air_ms_at_10pct'])} |")
    if stt:
        w, s = stt["window_30s"], stt["short_window"]
        lines += ["", f"Whisper decode (speech/, 1 thread): WER {w['wer'] * 100:.2f}% → "
                  f"{s['wer'] * 100:.2f}% with the short window; decode ≤ 3 s p50 "
                  f"{fmt(w['decode_ms_up_to_3s']['p50'])} → {fmt(s['decode_ms_up_to_3s']['p50'])}"
                  " ms."]
    return lines


def pct_or_dash(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.0f}%"


def soak_line(soak: dict[str, Any]) -> str:
    """One sentence per soak phase: RSS growth, p99 drift, lost turns, the kills' cost."""
    p = soak["parameters"]
    parts = []
    for name, ph in soak["phases"].items():
        growth = {k: g for k, g in ph["rss_growth"].items() if k != "loadgen"}
        worst = max(growth, key=lambda k: growth[k]["growth_pct"]) if growth else None
        mins = ph["per_minute"]
        text = (f"{name}: {ph['summary']['turns']} turns, {ph['lost_turns']} lost, "
                f"{ph['summary']['errors']} errors, {ph['summary']['timeouts']} timeouts; "
                f"p99 overhead per minute {fmt(mins[0]['overhead_p99_ms'])} → "
                f"{fmt(mins[-1]['overhead_p99_ms'])} ms")
        if worst:
            text += (f"; largest RSS growth after the warm-up minute {worst} "
                     f"{growth[worst]['growth_pct']:+.1f}%")
        kills = ph.get("kills", [])
        added = [k["max_added_latency_ms"] for k in kills if k["max_added_latency_ms"] is not None]
        if kills:
            text += (f"; {len(kills)} kills, {sum(k['lost_turns'] for k in kills)} turns lost "
                     f"around them, worst added latency {fmt(max(added, default=None))} ms, "
                     f"{ph.get('idle_reprompts', 0)} callers stalled until the idle re-prompt")
        parts.append(text)
    return (f"Soak ({soak['date']} UTC, {p['calls']} calls × {p['minutes']} min per phase, "
            f"instant providers, a worker killed every {p['kill_every_s']:.0f} s in phase kills"
            f") — " + "; ".join(parts) + ".")


def main() -> None:
    text = table()
    (RESULTS / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
