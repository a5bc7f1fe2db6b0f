"""What a tool round costs: voice-to-voice of turns that call a webhook tool vs turns that do
not, on the real services (NATS, gateway, STT, LLM, TTS, memory) with instant STT/TTS
(voxbus_testkit.instant) and the scripted OpenAI-compatible model server
(voxbus_testkit.scripted_llm)
whose webhook answers at once. The model and the business API take ~0 ms, so the difference
is the platform's tool path: the tool-call stream assembled, the HTTP webhook, the second
model request, and (for a webhook with side effects) the wait for the final transcript.

Two stacks one after another, the same clip and instructions: agent "tool" offers the webhook
`status` and the model calls it because the caller says "order"; agent "plain" offers no tool
and the model answers at once.

    python -m bench.tools [--calls N] [--out bench/results/tools-YYYYMMDD.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.voice_to_voice import ROOT, SPEECH
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.embedded import EmbeddedError, free_port, stop_all
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.stack import Stack
from voxbus_testkit.instant import HEARD, instant_env

STAGES = ("voice_to_voice", "final_transcript_to_first_token")
RULES = [{"when": "order", "tool": "status", "arguments": {"order": "A-1"}}]
INSTRUCTIONS = "You answer questions about orders. Keep answers short."
TOOL_AGENT = """
name: Tool bench (webhook)
instructions: {instructions}
tools:
  webhooks:
    - name: status
      description: The delivery status of an order.
      url: {base}/hooks/status
      parameters: {{type: object, properties: {{order: {{type: string}}}}}}
      read_only: {read_only}
"""
PLAIN_AGENT = """
name: Tool bench (no tools)
instructions: {instructions}
"""
TOOL_REPLY = 'Here is what I found: status says yes for {"order": "A-1"}.'
PLAIN_REPLY = "I can help with that."


@contextmanager
def scripted_server(hook_delay_s: float = 0.0) -> Iterator[str]:
    """voxbus_testkit.scripted_llm as its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxbus_testkit.scripted_llm", "--port", "0",
         "--rules", json.dumps(RULES),
         "--hook-delay", str(hook_delay_s)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it listens (or exits: empty line)
        if not line.startswith("listening on"):
            raise RuntimeError(f"the scripted model server did not start: {line!r}")
        yield f"http://127.0.0.1:{line.split()[-1]}"
    finally:
        stop_all([proc])  # type: ignore[list-item]


def hooks_seen(base: str) -> int:
    with urllib.request.urlopen(f"{base}/requests", timeout=10) as resp:
        return len(json.loads(resp.read())["hooks"])


def service_env(base: str, agent_file: Path) -> dict[str, str]:
    env = instant_env()  # instant STT and TTS, WebRTC VAD; the model is the scripted server
    env.update({"PYTHONPATH": str(ROOT), "VOXBUS_LOG_LEVEL": "WARNING",
                "VOXBUS_LLM_PROVIDER": "openai", "VOXBUS_LLM_BASE_URL": f"{base}/v1",
                "VOXBUS_LLM_MODEL": "scripted", "VOXBUS_AGENT_FILE": str(agent_file),
                "VOXBUS_AUDIOSOCKET_PORT": "0"})
    return env


async def one_call(url: str, pcm: bytes, want_tool: bool) -> dict[str, Any]:
    """One call; its first answered turn's stages, and whether it went the expected way."""
    result = await place_call(url, pcm, timeout_s=60)
    answered = [t for t in result.turns if t.get("user_text") and not t["interrupted"]]
    turn = answered[0] if answered else {}
    tools = [name for e in result.events if e.get("type") == "tools"
             and e.get("turn") == turn.get("turn") for name in e["tools"]]
    text = str(turn.get("agent_text", ""))
    expected = TOOL_REPLY if want_tool else PLAIN_REPLY
    ok = (bool(turn) and not result.errors and tools == (["status"] if want_tool else [])
          and text.strip().startswith(expected) and turn.get("user_text") == HEARD)
    latency = turn.get("latency_ms", {})
    return {"ok": ok, "turns": len(result.turns), "tools": tools, "agent_text": text,
            "latency_ms": {s: latency.get(s) for s in STAGES},
            "first_token_to_first_audio_chunk": latency.get("first_token_to_first_audio_chunk"),
            "errors": result.errors}


async def run_calls(url: str, pcm: bytes, calls: int, want_tool: bool, label: str
                    ) -> list[dict[str, Any]]:
    await one_call(url, pcm, want_tool)  # warm-up: connections, imports, JIT-free first path
    rows = []
    for i in range(calls):
        row = await one_call(url, pcm, want_tool)
        rows.append(row)
        lat = row["latency_ms"]
        print(f"{label:<6} call {i + 1:>3}: voice-to-voice {lat['voice_to_voice']} ms, "
              f"final transcript -> first token {lat['final_transcript_to_first_token']} ms"
              f"{'' if row['ok'] else '  UNEXPECTED: ' + repr(row['agent_text'])}", flush=True)
    return rows


def run_agent(base: str, agent_yaml: str, pcm: bytes, calls: int, want_tool: bool, label: str,
              read_only: bool = False) -> tuple[list[dict[str, Any]], int]:
    """A fresh stack with this agent file; (rows, webhook requests the server saw)."""
    hooks_before = hooks_seen(base)
    with tempfile.TemporaryDirectory() as tmp:
        agent = Path(tmp) / "agent.yaml"
        agent.write_text(agent_yaml.format(base=base, instructions=INSTRUCTIONS,
                                           read_only=str(read_only).lower()))
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs",
                      env=service_env(base, agent))
        try:
            with stack.running(timeout_s=240):
                rows = asyncio.run(run_calls(stack.gateway_url, pcm, calls, want_tool, label))
        except EmbeddedError:
            for log in sorted((Path(tmp) / "logs").glob("*.log")):  # before tmp is removed
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name}", *tail, sep="\n", file=sys.stderr)
            raise
    return rows, hooks_seen(base) - hooks_before


def summarize(rows: list[dict[str, Any]], hooks: int) -> dict[str, Any]:
    good = [r for r in rows if r["ok"]]
    out: dict[str, Any] = {"calls": len(rows), "as_expected": len(good), "webhook_requests": hooks}
    for stage in STAGES:
        values = [r["latency_ms"][stage] for r in good if r["latency_ms"][stage] is not None]
        out[f"{stage}_ms"] = {"p50": pct(values, 50), "p95": pct(values, 95), "n": len(values)}
    return out


def difference(tool: dict[str, Any], plain: dict[str, Any], stage: str) -> float | None:
    a, b = tool[f"{stage}_ms"]["p50"], plain[f"{stage}_ms"]["p50"]
    return None if a is None or b is None else round(a - b, 1)


def shortest_clip() -> dict[str, str]:
    with (SPEECH / "manifest.tsv").open() as f:
        return min(csv.DictReader(f, delimiter="\t"), key=lambda c: float(c["seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20, help="calls per agent")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--read-only", action="store_true",
                        help="mark the webhook read_only: it may run before the final transcript")
    args = parser.parse_args()
    clip = shortest_clip()
    pcm = load_wav(SPEECH / clip["file"])
    load_before = os.getloadavg()[0]
    started = time.time()
    with scripted_server(hook_delay_s=0.0) as base:
        tool_rows, tool_hooks = run_agent(base, TOOL_AGENT, pcm, args.calls, True, "tool",
                                          args.read_only)
        plain_rows, plain_hooks = run_agent(base, PLAIN_AGENT, pcm, args.calls, False, "plain")
    tool, plain = summarize(tool_rows, tool_hooks), summarize(plain_rows, plain_hooks)
    added = {stage: difference(tool, plain, stage) for stage in STAGES}
    report = {
        "benchmark": "tools",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_1m_at_start": round(load_before, 2),
                    "note": "one machine: nats-server, the five services, the scripted model "
                            "server and the caller share its cores"},
        "setup": {"clip": clip["id"], "clip_seconds": float(clip["seconds"]),
                  "providers": "instant STT/TTS (voxbus_testkit.instant), WebRTC VAD, scripted "
                               "OpenAI-compatible model (voxbus_testkit.scripted_llm)",
                  "hook_delay_s": 0.0,
                  "webhook": f"status (POST, read_only: {str(args.read_only).lower()})",
                  "measured": "each call's first answered turn; a warm-up call per stack"},
        "summary": {"tool": tool, "plain": plain,
                    "tool_round_adds_ms": {"voice_to_voice_p50": added["voice_to_voice"],
                                           "final_transcript_to_first_token_p50":
                                               added["final_transcript_to_first_token"]}},
        "calls": {"tool": tool_rows, "plain": plain_rows},
    }
    out = args.out or ROOT / "bench" / "results" / f"tools-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))
    print(f"tool round adds {added['voice_to_voice']} ms p50 voice-to-voice "
          f"({added['final_transcript_to_first_token']} ms p50 final transcript -> first token)")
    print(f"written to {out}")
    if tool["as_expected"] < len(tool_rows) or plain["as_expected"] < len(plain_rows):
        print("warning: some calls did not go as scripted (see 'ok' in the JSON); they are "
              "left out of the figures", file=sys.stderr)


if __name__ == "__main__":
    main()
