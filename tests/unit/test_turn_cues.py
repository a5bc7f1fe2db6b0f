"""The words-so-far cues for the end of a turn (services/stt/voxbus_stt/turn_cues.py)."""

from __future__ import annotations

import pytest

from voxbus_stt.turn_cues import text_cue


@pytest.mark.parametrize("text", [
    "My number is 415.", "My number is 415-555.", "My number is four one five,",
    "The card is 4111 1111 1111", "The card number is 4,111,111,111,111.",
    "A table for, um", "a table for um...", "I'd like the pizza and", "Friday the",
    "It's for", "um", "Can I book a table for -",
])
def test_unfinished_words_hold_the_turn(text: str) -> None:
    assert text_cue(text) == "incomplete"


@pytest.mark.parametrize("text", [
    "My number is 415-555-0123.", "4 1 5 5 5 5 0 1 2 3", "1 415 555 0123",
    "The card is 4,111,111,111,111,111.", "4111 1111 1111 1111", "my zip code is 94110",
    "The booking is for March 14th, 2026.",
])
def test_a_whole_dictated_number_ends_the_turn(text: str) -> None:
    assert text_cue(text) == "complete"


@pytest.mark.parametrize("text", [
    "A table for two.", "What time do you open?", "Experience proves this.", "Yes I can.",
    "Thanks, that's all.", "Yes.", "", "   ", "?!", "Make it 7:30 please.",
])
def test_otherwise_the_audio_decides(text: str) -> None:
    assert text_cue(text) is None


@pytest.mark.parametrize("text", [
    "The address is 22 Baker Street.", "I live at 22", "My name is Smith.", "S M I T H,",
    "The booking is for Friday.", "My email is john at example dot com",
])
def test_a_dictation_is_held_for_the_short_hold(text: str) -> None:
    assert text_cue(text) in ("dictating", "incomplete")


def test_a_question_about_a_number_is_not_a_dictation() -> None:
    assert text_cue("What's your phone number?") is None


def test_what_is_dictated_sets_the_whole_length() -> None:
    """Whisper writes "4111, 1111" as "4,111,111": 7 digits, a whole phone number but only
    part of a card."""
    assert text_cue("The card number is 4,111,111") == "incomplete"
    assert text_cue("My number is 555 0123") == "complete"
    assert text_cue("The zip is 94110") == "complete"
