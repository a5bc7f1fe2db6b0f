"""The page `make run` opens, as a newcomer sees it, in headless Chromium with a fake
microphone: the greeting, the caller's words, a tool call while it runs, a routed answer,
the agent's text, a microphone level and a waterfall with plain labels. The language model
is the scripted server (voxbus_testkit.scripted_llm), so the tool call is certain."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.async_api import async_playwright

from tests.integration.conftest import SPEECH, assert_services_alive
from tests.integration.test_browser import FLAGS
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port, stop_all
from voxbus_cli.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GREETING = "Hello, this is the jewellery line."
AGENT = """
name: Page test line
instructions: Use the tools.
greeting: "{greeting}"
tools:
  webhooks:
    - name: stock
      description: Is an item in stock?
      url: {base}/hooks/stock
      timeout_s: 20
      parameters: {{type: object, properties: {{item: {{type: string}}}}, required: [item]}}
routes:
  - name: halt
    keywords: ["halt"]
    say: "We never halt on the way."
"""


@pytest.fixture(scope="module")
def page_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rules = [{"when": "ring", "tool": "stock", "arguments": {"item": "gold ring"}}]
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxbus_testkit.scripted_llm", "--port", "0", "--rules",
         json.dumps(rules), "--hook-delay", "1.0"], cwd=ROOT, stdout=subprocess.PIPE,
        text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on"), line
    base = f"http://127.0.0.1:{line.split()[-1]}"
    workdir = tmp_path_factory.mktemp("page")
    agent = workdir / "agent.yaml"
    agent.write_text(AGENT.format(base=base, greeting=GREETING))
    env = {"PYTHONPATH": str(ROOT), "VOXBUS_AGENT_FILE": str(agent),
           "VOXBUS_LLM_BASE_URL": f"{base}/v1", "VOXBUS_LLM_MODEL": "scripted",
           "VOXBUS_TTS_PROVIDER": "voxbus_testkit.instant:tts", "VOXBUS_AUDIOSOCKET_PORT": "0",
           "VOXBUS_SIP_PORT": "0"}
    try:
        with Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
                   env=env).running(timeout_s=240) as s:
            yield s
    finally:
        stop_all([proc])  # type: ignore[list-item]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed "
                    "(make test installs it)")
async def test_the_page_shows_the_whole_conversation(page_stack: Stack, tmp_path: Path) -> None:
    pause = np.zeros(16000 * 8, "<i2")
    mic = tmp_path / "mic.wav"  # the greeting plays first; then a tool turn, a routed turn
    sf.write(str(mic), np.concatenate([
        np.zeros(16000 * 4, "<i2"), np.frombuffer(load_wav(SPEECH / "osr_us0034_8k_s01.wav"),
                                                  dtype="<i2"), pause,
        np.frombuffer(load_wav(SPEECH / "ls_test_4507-16021-0012.wav"), dtype="<i2"),
        pause]), 16000, subtype="PCM_16")
    page_url = page_stack.gateway_url.replace("ws://", "http://").replace("/v1/pcm", "/")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={mic}%noloop"])
        try:
            page = await browser.new_page()
            await page.goto(page_url)
            await page.click("#call")
            await page.wait_for_function("window.voxbusStats.routed.length > 0 && window"
                                         ".voxbusStats.turns.some((t) => t.agent_text && "
                                         "t.agent_text.includes('never halt'))",
                                         timeout=180_000)
            stats = await page.evaluate("window.voxbusStats")
            bubbles = await page.locator(".msg").all_inner_texts()
            waterfalls = await page.locator(".waterfall").all_inner_texts()
            await page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            await page.click("#call")
        finally:
            await browser.close()
    text = "\n".join(bubbles)
    assert stats["greeting"] == GREETING and GREETING in text
    assert stats["tools"][0] == "stock" and "calling stock…" in text, text
    assert "Here is what I found" in text
    assert stats["routed"] == ["halt"] and 'answered by the route "halt"' in text
    assert "We never halt on the way." in text
    assert "CALLER" in text.upper() and "gold ring" in text.lower()
    assert stats["micPeak"] > 0.2, "the level meter never moved"
    turn_lines = [w for w in waterfalls if w.startswith("turn ")]
    assert turn_lines and all(
        label in turn_lines[0] for label in ("end of turn", "STT", "LLM first token",
                                             "first audio", "playout")), waterfalls
    assert_services_alive(page_stack)
