"""What the words so far say about the end of the turn, next to what the audio model hears.

The audio model (smart_turn.py) misses what only the words show: "my number is four one
five" sounds finished after each group, "a table for, um" does not end a request. At a
pause the transcript so far (the speculative decode) is read for such cues:

- `incomplete`: it ends on a hesitation ("um"), a word that cannot end a sentence ("for",
  "and", "the", "is"), a trailing comma or dash, or a run of dictated digits that is not
  yet a whole phone, card or postal number;
- `complete`: it ends on a whole number of that kind (10 digits, 16, ...);
- no cue (None) otherwise: the audio model decides.

English only, like the bundled models; other languages get no cues (the model alone).
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


HESITATIONS = _words("um uh er erm uhm umm uhh hmm mm ah eh")
# words after which an English sentence goes on (conjunctions, prepositions, articles,
# possessives, auxiliaries, "like")
CONTINUATIONS = _words("""
and or but so because then than that which who whose where when while if
for to at on in of with from by about into onto over under between after before until
the a an my your our their his her its this these those some any each every
is are was were am be been being will would can could should shall may might must do does
did have has had i'm it's that's there's i'd i'll we're you're like just also
""")
DIGIT_WORDS = {"zero": 1, "oh": 1, "o": 1, "one": 1, "two": 1, "three": 1, "four": 1,
               "five": 1, "six": 1, "seven": 1, "eight": 1, "nine": 1, "double": 0,
               "triple": 0}
MONTHS = _words("january february march april may june july august september october "
                "november december")
# digit counts of whole dictated numbers: a US ZIP code, local and US phone numbers (with
# the 1), cards (Amex, most others). Lengths a longer number passes through on its way
# (12 digits of a card) are left out: those wait for more digits or for the longest hold.
WHOLE_NUMBERS = frozenset({5, 7, 10, 11, 15, 16})
_TOKEN = re.compile(r"\d+(?:st|nd|rd|th)\b|[A-Za-z']+|\d[\d,.\-]*|[,\-–—]|\.\.\.|…")
_PUNCTUATION = (",", "-", "–", "—")


def _digit_run(tokens: list[str]) -> tuple[int, str]:
    """(digits, the word before them) of the run of dictated digits ending `tokens`."""
    digits = 0
    for token in reversed(tokens):
        if token in _PUNCTUATION:
            continue
        plain = re.sub(r"[,.\-]", "", token)
        if plain.isdigit():
            digits += len(plain)
        elif token.lower() in DIGIT_WORDS:
            digits += DIGIT_WORDS[token.lower()]
        else:
            return digits, token.lower()
    return digits, ""


def text_cue(text: str) -> str | None:
    """"incomplete", "complete" or None (no cue) for the transcript of a turn so far."""
    stripped = text.strip()
    if not stripped:
        return None
    tokens = _TOKEN.findall(stripped)
    if not tokens:
        return None
    if tokens[-1] in (*_PUNCTUATION, "...", "…"):
        return "incomplete"
    words = [t.lower() for t in tokens if t[0].isalpha()]
    last = words[-1] if words and not tokens[-1][0].isdigit() else ""
    if last in HESITATIONS or last in CONTINUATIONS:
        return "incomplete"
    digits, before = _digit_run(tokens)
    if digits < 3:
        return None  # "a table for two": a quantity, not a dictation
    if digits == 4 and (before in MONTHS or before[:1].isdigit()):
        return None  # a year closing a date ("March 14th, 2026")
    return "complete" if digits in WHOLE_NUMBERS else "incomplete"
