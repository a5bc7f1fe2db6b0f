"""The task suite: scripted callers ask `make run`'s restaurant agent (the embedded models,
its booking sidecar) for what its callers want, over the Twilio edge with spoken turns, and
each call is judged on the outcome — not on wording:

- hours: the opening hours (a route may answer);
- allergens: a nut allergy question answered through `lookup` and mentioning nuts;
- booking: availability, then the caller's name, then the booking — judged by the booking
  service's own records (a table for 2 on Friday at 19:00 under Rossi);
- transfer: "can I speak to the manager" ends in a transfer to the manager's number;
- goodbye: the agent ends the call (one phrasing a route answers, one only the model can).

Per model: task success rate, turns per task, voice-to-voice per turn (caller side), the
LLM service's time to first token, and any invented phone number or placeholder. A long
call of 10 questions gives TTFT at turn 10 against turn 1.

    python -m bench.tasks [--models smollm2-135m,qwen2.5-0.5b] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.task_calls import CallRecord, converse
from bench.turn_cases import CallerVoices
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agents" / "restaurant" / "agent.yaml"
BOOKINGS = "http://127.0.0.1:8790/bookings"
VOICES = ("caller-a", "caller-b", "caller-c")
KNOWN_NUMBERS = {"15550100199", "15550100100", "14"}  # the agent file's, the address
PLACEHOLDER = re.compile(r"\[[^\]]{2,40}\]|\{[^}]{2,40}\}|\b(?:XXX|xxx)\b|<[a-z_ ]{2,30}>")
PHONE = re.compile(r"(?:\+?\d[\d\s().-]{6,}\d)")


@dataclass
class Task:
    name: str
    turns: list[str]
    # "" when the call did what the caller wanted, else why not
    judge: Callable[[CallRecord, list[dict[str, Any]]], str]
    done: Callable[[CallRecord], bool] = lambda record: False  # stop talking early


def _said(record: CallRecord) -> str:
    return " ".join(t.agent_text for t in record.turns).lower()


def _tools(record: CallRecord) -> list[str]:
    return [name for t in record.turns for name in t.tools]


def judge_hours(record: CallRecord, new: list[dict[str, Any]]) -> str:
    said = _said(record)
    return "" if re.search(r"noon|twelve|12|six|6 ?p|half past", said) else "no hours given"


def judge_allergens(record: CallRecord, new: list[dict[str, Any]]) -> str:
    if "lookup" not in _tools(record):
        return "answered without lookup"
    return "" if "nut" in _said(record) else "the answer does not mention nuts"


def judge_booking(record: CallRecord, new: list[dict[str, Any]]) -> str:
    tools = _tools(record)
    if "check_availability" not in tools:
        return "availability never checked"
    today = dt.date.today()
    friday = (today + dt.timedelta(days=(4 - today.weekday()) % 7 or 7)).isoformat()
    wanted = [b for b in new if (b["party_size"], b["date"], b["time"]) == (2, friday, "19:00")]
    if not wanted:
        return f"no booking for 2 on {friday} at 19:00 (made: {new})"
    if len(new) > 1:
        return f"booked {len(new)} times"
    if tools.index("check_availability") > tools.index("book_table"):
        return "booked before checking availability"
    return ""


def judge_transfer(record: CallRecord, new: list[dict[str, Any]]) -> str:
    return "" if record.transfer_target == "+15550100199" else (
        f"transfer target {record.transfer_target or 'none'}")


def judge_goodbye(record: CallRecord, new: list[dict[str, Any]]) -> str:
    return "" if record.ended_by_agent else "the agent did not end the call"


TASKS = [
    Task("hours", ["What are your opening hours on Saturday?"], judge_hours),
    Task("allergens", ["I have a nut allergy. Are there nuts in any of your dishes?"],
         judge_allergens),
    Task("booking", ["I would like to book a table for two people on Friday at seven pm.",
                     "The name is Rossi.", "Yes, please book it."], judge_booking,
         done=lambda r: "book_table" in _tools(r)),
    Task("transfer", ["Could I speak to the manager, please?"], judge_transfer),
    Task("goodbye-routed", ["That's all, thank you. Goodbye!"], judge_goodbye),
    Task("goodbye", ["Great, thanks for your help. Have a nice evening, bye."],
         judge_goodbye),
]
LONG_CALL = ["Do you have a terrace or a garden?", "Is there parking nearby?",
             "Do you have a children's menu?", "Can I bring a dog?",
             "Is the dining room accessible for a wheelchair?", "Do you have vegan dishes?",
             "How far ahead can I book?", "What is your cancellation policy?",
             "Which tram stops near you?", "Do you serve pizza?"]


def invented(text: str) -> list[str]:
    """Placeholders and phone-like numbers the agent did not get from its files."""
    found = [m.group(0) for m in PLACEHOLDER.finditer(text)]
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) >= 7 and digits not in KNOWN_NUMBERS:
            found.append(m.group(0).strip())
    return found


def bookings() -> list[dict[str, Any]]:
    with urllib.request.urlopen(BOOKINGS, timeout=5) as resp:
        rows: list[dict[str, Any]] = json.load(resp)
        return rows


async def run_task(stack: Stack, task: Task, voice: str, voices: CallerVoices, tag: str
                   ) -> dict[str, Any]:
    before = {b["reference"] for b in bookings()}
    turns = [(text, voices.pcm(text, voice)) for text in task.turns]
    url = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    record = await converse(url, stack.nats_url, f"CA{tag}{int(time.time() * 1e3) % 10**9:09d}",
                            turns, done=task.done)
    new = [b for b in bookings() if b["reference"] not in before]
    failure = record.error or task.judge(record, new)
    return {"task": task.name, "voice": voice, "ok": not failure, "why": failure,
            "turns": len(record.turns),
            "invented": [x for t in record.turns for x in invented(t.agent_text)],
            "per_turn": [{"said": t.said, "heard_as": t.heard_as, "agent": t.agent_text,
                          "tools": t.tools, "routed": t.routed,
                          "voice_to_voice_ms": t.voice_to_voice_ms,
                          "llm_first_token_ms": t.llm_first_token_ms}
                         for t in record.turns]}


async def run_model(stack: Stack, repeats: int) -> dict[str, Any]:
    voices = CallerVoices()
    calls = []
    warm = Task("warm", ["Hello, are you there?"], lambda r, n: "")
    await run_task(stack, warm, "caller-a", voices, "warm")
    for rep in range(repeats):
        for n, task in enumerate(TASKS):
            row = await run_task(stack, task, VOICES[(rep + n) % len(VOICES)], voices,
                                 f"{rep}{n}")
            calls.append(row)
            print(f"  {task.name:<15} {'ok ' if row['ok'] else 'FAIL'} {row['why'][:70]} "
                  f"turns {row['turns']}", flush=True)
    long_turns = [(q, voices.pcm(q, "caller-b")) for q in LONG_CALL]
    url = stack.gateway_url.replace("/v1/pcm", "/v1/twilio")
    long_record = await converse(url, stack.nats_url, f"CAlong{int(time.time()) % 10**8}",
                                 long_turns)
    long_ttft = [t.llm_first_token_ms for t in long_record.turns]
    return {"calls": calls, "long_call": {
        "llm_first_token_ms": long_ttft, "error": long_record.error,
        "invented": [x for t in long_record.turns for x in invented(t.agent_text)],
        "answers": [t.agent_text for t in long_record.turns]}, "summary": summarize(
            calls, long_ttft, long_record)}


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values)) if values else None


def summarize(calls: list[dict[str, Any]], long_ttft: list[float | None],
              long_record: CallRecord) -> dict[str, Any]:
    turns = [t for c in calls for t in c["per_turn"]] + [
        {"voice_to_voice_ms": t.voice_to_voice_ms, "llm_first_token_ms": t.llm_first_token_ms,
         "routed": t.routed, "tools": t.tools} for t in long_record.turns]
    v2v = [t["voice_to_voice_ms"] for t in turns if t["voice_to_voice_ms"] is not None]
    llm_turns = [t for t in turns if not t["routed"]]
    ttft = [t["llm_first_token_ms"] for t in llm_turns
            if t["llm_first_token_ms"] and not t["tools"]]
    ttft_tools = [t["llm_first_token_ms"] for t in llm_turns
                  if t["llm_first_token_ms"] and t["tools"]]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        by_task.setdefault(c["task"], []).append(c)
    first, tenth = (long_ttft[0], long_ttft[-1]) if len(long_ttft) == 10 else (None, None)
    return {
        "task_success": round(sum(c["ok"] for c in calls) / max(1, len(calls)), 3),
        "by_task": {k: {"ok": sum(c["ok"] for c in v), "of": len(v),
                        "turns_mean": round(statistics.mean(c["turns"] for c in v), 2)}
                    for k, v in by_task.items()},
        "invented": sum(len(c["invented"]) for c in calls),
        "voice_to_voice_p50_ms": _p50(v2v),
        "llm_first_token_p50_ms": _p50(ttft),
        "llm_first_token_after_tools_p50_ms": _p50(ttft_tools),
        "long_call_ttft_turn1_ms": first, "long_call_ttft_turn10_ms": tenth,
    }


def main() -> None:
    from voxbus_cli.models import DEFAULT_MODEL, MODELS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=DEFAULT_MODEL,
                        help=f"comma-separated, of: {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=2, help="calls per task and model")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep the services' logs here (one folder per model)")
    args = parser.parse_args()
    started = time.time()
    results: dict[str, Any] = {}
    for model in args.models.split(","):
        print(f"model {model}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(workdir=Path(tmp), gateway_port=free_port(),
                          log_dir=(args.log_dir / model) if args.log_dir else Path(tmp) / "logs",
                          env={"VOXBUS_AGENT_FILE": str(AGENT), "VOXBUS_EMBEDDED_MODEL": model,
                               "VOXBUS_SIP_PORT": "0", "VOXBUS_AUDIOSOCKET_PORT": "0"})
            with stack.running(timeout_s=600):
                results[model] = asyncio.run(run_model(stack, args.repeats))
        print(json.dumps(results[model]["summary"]), flush=True)
    report = {
        "benchmark": "tasks",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "agent": str(AGENT.relative_to(ROOT)), "edge": "twilio (μ-law 8 kHz media stream)",
        "caller": "Piper joe, pitch/pace shifted per caller voice, real time",
        "results": results,
    }
    out = args.out or ROOT / "bench" / "results" / f"tasks-{time.strftime('%Y%m%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
