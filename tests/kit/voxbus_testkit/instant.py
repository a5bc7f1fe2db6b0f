"""Instant providers: test doubles that answer in microseconds, so a run of the real services
measures the platform (bus, gateway, endpointing, playout) and not the models.

Loaded by the services as plugins, e.g. `VOXBUS_STT_PROVIDER=voxbus_testkit.instant:stt` with the
repository root on PYTHONPATH (the capacity benchmark and `tests/integration/test_load.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np

from voxbus_common.audio import float_to_pcm16
from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn, ToolCall

HEARD = "I would like to check the status of my order"
REPLY = "Sure, I can help with that. Your order shipped yesterday."
TTS_RATE = 22050  # Piper's rate, so the platform still pays for resampling
MS_PER_CHAR = 12  # a clause of 30 characters plays for ~0.36 s


class InstantSpeechToText:
    """Hears the same sentence in every utterance, at once."""

    name = "instant-stt"

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        return HEARD if pcm else ""


class InstantChat:
    """Streams a fixed two-clause answer, word by word, with no model time."""

    name = "instant-llm"

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        for word in REPLY.split(" "):
            yield word + " "


class InstantTextToSpeech:
    """A quiet tone whose length follows the text; computed once per length."""

    name = "instant-tts"
    sample_rate = TTS_RATE

    def __init__(self) -> None:
        self._cache: dict[int, bytes] = {}

    def synthesize(self, text: str) -> Iterator[bytes]:
        n = len(text) * MS_PER_CHAR * TTS_RATE // 1000
        if n not in self._cache:
            t = np.arange(n) / TTS_RATE
            self._cache[n] = float_to_pcm16(0.05 * np.sin(2 * np.pi * 180.0 * t))
        yield self._cache[n]


def stt(settings: Settings) -> InstantSpeechToText:
    return InstantSpeechToText()


class TimedSpeechToText(InstantSpeechToText):
    """Hears the same sentence and says how much of the caller's audio it was given, so a
    test can tell that no word was dropped (`heard_ms`)."""

    name = "timed-stt"

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        return f"{HEARD} after {len(pcm) * 1000 // (2 * sample_rate)} ms" if pcm else ""


def timed_stt(settings: Settings) -> TimedSpeechToText:
    return TimedSpeechToText()


def heard_ms(text: str) -> int:
    """The audio length a TimedSpeechToText transcript reports."""
    prefix, _, rest = text.partition(" after ")
    assert prefix == HEARD and rest.endswith(" ms"), text
    return int(rest[:-3])


def llm(settings: Settings) -> InstantChat:
    return InstantChat()


class SlowChat(InstantChat):
    """The instant answer at a slow model's pace (a word every 0.4 s), so a test can act in
    the middle of a turn (kill its worker)."""

    name = "slow-llm"

    async def stream(self, messages: list[ChatTurn],
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        for word in REPLY.split(" "):
            await asyncio.sleep(0.4)  # model time being simulated, not a synchronisation
            yield word + " "


def slow_llm(settings: Settings) -> SlowChat:
    return SlowChat()


def tts(settings: Settings) -> InstantTextToSpeech:
    return InstantTextToSpeech()


class SlowTextToSpeech(InstantTextToSpeech):
    """The instant tone after a slow voice's model time (1 s per clause), so a test can kill
    a TTS replica while it synthesizes."""

    name = "slow-tts"

    def synthesize(self, text: str) -> Iterator[bytes]:
        logging.getLogger(__name__).info("slow synthesis started")  # (the test finds the owner)
        time.sleep(1.0)  # model time being simulated (a worker thread), not synchronisation
        yield from super().synthesize(text)


def slow_tts(settings: Settings) -> SlowTextToSpeech:
    return SlowTextToSpeech()


def instant_env() -> dict[str, str]:
    """Service environment for a stack with instant models and the cheap WebRTC VAD."""
    return {"VOXBUS_STT_PROVIDER": "voxbus_testkit.instant:stt",
            "VOXBUS_VAD_PROVIDER": "webrtc",
            "VOXBUS_LLM_PROVIDER": "voxbus_testkit.instant:llm",
            "VOXBUS_TTS_PROVIDER": "voxbus_testkit.instant:tts",
            # no llama.cpp server: the instant chat model never calls it
            "VOXBUS_LLM_BASE_URL": "http://127.0.0.1:9/v1"}
