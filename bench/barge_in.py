"""Barge-in benchmark: the caller asks something, and once the agent has spoken ~0.5 s the
caller talks over it. Reports the reaction time the gateway measured (caller speech onset,
as found in the audio, -> the edge's buffer cleared) and how much agent audio still reached
the caller after the clear (should be none).

    python -m bench.barge_in [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.voice_to_voice import ROOT, SPEECH
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.load_report import percentile as pct
from voxbus_cli.stack import Stack
from voxbus_common.audio import frame_bytes

QUESTIONS = ["ls_test_4507-16021-0012.wav", "ls_dev_251-137823-0002.wav",
             "osr_us0034_8k_s01.wav", "arctic_aew_a0003.wav", "ls_test_2830-3980-0043.wav"]
INTERRUPTIONS = ["osr_us0034_8k_s04.wav", "ls_dev_251-118436-0001.wav",
                 "osr_us0034_8k_s06.wav", "arctic_axb_a0004.wav", "osr_us0034_8k_s10.wav"]


async def one_barge_in(url: str, question: bytes, interruption: bytes) -> dict[str, Any]:
    frame = frame_bytes(16000)
    events: list[dict[str, Any]] = []
    agent_audio = asyncio.Event()
    agent_bytes = 0
    after_clear = 0  # agent audio that still arrived after the clear, before the new turn
    cleared = False
    interrupted = asyncio.Event()
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        async def receive() -> None:
            nonlocal agent_bytes, after_clear, cleared
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    agent_bytes += len(msg.data)
                    if cleared and not interrupted.is_set():
                        after_clear += len(msg.data)
                    if agent_bytes >= 16000:  # 0.5 s of agent speech has reached us
                        agent_audio.set()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    events.append(event)
                    cleared = cleared or event.get("type") == "clear"
                    if event.get("type") == "turn" and event.get("interrupted"):
                        interrupted.set()

        async def speak(pcm: bytes, until: asyncio.Event | None = None) -> None:
            started, n = time.monotonic(), 0
            while n * frame < len(pcm) or (until is not None and not until.is_set()):
                chunk = pcm[n * frame : (n + 1) * frame].ljust(frame, b"\x00")
                await ws.send_bytes(chunk)
                n += 1
                await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))

        receiver = asyncio.create_task(receive())
        await speak(question, until=agent_audio)
        talker = asyncio.create_task(speak(interruption + b"\x00" * 32000, until=None))
        try:
            await asyncio.wait_for(interrupted.wait(), timeout=60)
        except TimeoutError:
            print("  the agent was not interrupted", flush=True)
        await talker
        await ws.send_str(json.dumps({"type": "stop"}))
        await asyncio.wait_for(receiver, timeout=30)
    paused = [e for e in events if e.get("type") == "barge_in" and e.get("phase") == "paused"]
    return {"reaction_ms": paused[0]["reaction_ms"] if paused else None,
            "agent_audio_after_clear_ms": after_clear // 32,
            "interrupted": interrupted.is_set(),
            "resumed": any(e.get("phase") == "resumed" for e in events)}


async def run(stack: Stack, calls: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(calls):
        q = load_wav(SPEECH / QUESTIONS[i % len(QUESTIONS)])
        b = load_wav(SPEECH / INTERRUPTIONS[i % len(INTERRUPTIONS)])
        row = await one_barge_in(stack.gateway_url, q, b)
        print(f"barge-in {i + 1}: {row}", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), gateway_port=free_port(), log_dir=Path(tmp) / "logs",
                      env={"VOXBUS_SYSTEM_PROMPT": "You are a friendly phone assistant. "
                                                   "Always answer in three full sentences."})
        stack.start()
        try:
            stack.wait_ready()
            rows = asyncio.run(run(stack, args.calls))
        finally:
            stack.stop()
    reactions = [r["reaction_ms"] for r in rows if r["reaction_ms"] is not None]
    summary = {"barge_ins": len(rows), "detected": len(reactions),
               "interrupted": sum(1 for r in rows if r["interrupted"]),
               "reaction_ms": {"p50": pct(reactions, 50), "p95": pct(reactions, 95),
                               "max": max(reactions) if reactions else None}}
    report = {"benchmark": "barge_in", "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "summary": summary, "rows": rows}
    out = ROOT / "bench" / "results" / f"barge_in-{time.strftime('%Y%m%d')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
