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
])
def test_a_whole_dictated_number_ends_the_turn(text: str) -> None:
    assert text_cue(text) == "complete"


@pytest.mark.parametrize("text", [
    "A table for two.", "What time do you open?", "The booking is for March 14th, 2026.",
    "I live at 22", "Thanks, that's all.", "Yes.", "", "   ", "?!", "Make it 7:30 please.",
])
def test_otherwise_the_audio_decides(text: str) -> None:
    assert text_cue(text) is None
