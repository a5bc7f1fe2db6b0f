"""The browser edge for real: headless Chromium with a fake microphone fed from a WAV
talks to the page the gateway serves; the agent must answer."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.async_api import async_playwright

from tests.integration.conftest import SPEECH, assert_services_alive, words
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed "
                    "(make test installs it)")
async def test_browser_caller_talks_to_the_agent(stack: Stack, tmp_path: Path) -> None:
    speech = np.frombuffer(load_wav(SPEECH / "osr_us0034_8k_s03.wav"), dtype="<i2")
    mic = tmp_path / "mic.wav"
    sf.write(str(mic), np.concatenate([np.zeros(8000, "<i2"), speech,
                                       np.zeros(16000 * 12, "<i2")]), 16000, subtype="PCM_16")
    page_url = stack.gateway_url.replace("ws://", "http://").replace("/v1/pcm", "/")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={mic}%noloop"])
        try:
            page = await browser.new_page()
            await page.goto(page_url)
            await page.click("#call")
            await page.wait_for_function("window.voxbusStats.turns.length > 0", timeout=120_000)
            stats = await page.evaluate("window.voxbusStats")
            await page.screenshot(path=str(tmp_path / "browser.png"))
            waterfalls = await page.locator(".waterfall").count()
            await page.click("#call")  # hang up
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('ended')",
                timeout=60_000)
        finally:
            await browser.close()
    assert "neighbor" in words(" ".join(stats["finals"])) or "cat" in words(
        " ".join(stats["finals"])), stats["finals"]
    turn = stats["turns"][0]
    assert turn["agent_text"], turn
    assert stats["audioBytes"] > 16000, "less than half a second of agent audio arrived"
    assert stats["marks"] > 0, "the page echoed no marks"
    assert waterfalls >= 1
    assert turn["latency_ms"]["voice_to_voice"] > 0
    assert_services_alive(stack)
