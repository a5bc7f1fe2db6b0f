"""What the words so far say about the end of the turn, next to what the audio model hears.

The audio model (smart_turn.py) misses what only the words show: "my number is four one
five" sounds finished after each group, "a table for, um" does not end a request. At a
pause the transcript so far (the speculative decode) is read for such cues:

- `incomplete`: it ends on a hesitation ("um"), a word that cannot end a sentence ("for",
  "and", "the", "is"), a trailing comma or dash, or a run of dictated digits that is not
  yet a whole phone, card or postal number;
- `dictating`: the caller is giving a number, address, date, name or code ("my address
  is ...", "the booking is for ..."), where every group sounds finished: the turn is held
  for the shorter hold unless more speech or a whole number follows;
- `complete`: it ends on a whole number of that kind (10 digits, 16, ...);
- no cue (None) otherwise: the audio model decides.

English only, like the bundled models; other languages get no cues (the model alone).
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


HESITATIONS = _words("um uh er erm uhm umm uhh hmm mm ah eh")
# words after which a caller's sentence goes on: conjunctions, articles, possessives,
# prepositions and "is", only those that (almost) never end one ("do this", "yes I can",
# "see you then" do end: such words are left to the audio model)
CONTINUATIONS = _words("""
and or but because if than whether
the a an my your our their his her its every
of to for with from at by about into onto between on
is are i'm i'd i'll we're you're they're
""")
# what callers say before they dictate something in groups
DICTATION = re.compile(
    r"\b(number|phone|card|address|zip|post ?code|postal|e-?mail|spell|spelled|spelt|"
    r"name is|live at|living at|located at|date|born|birthday|account|code|reference|"
    r"confirmation|booking is for|reservation is for|booked for|licen[cs]e|passport)\b",
    re.IGNORECASE)
DIGIT_WORDS = {"zero": 1, "oh": 1, "o": 1, "one": 1, "two": 1, "three": 1, "four": 1,
               "five": 1, "six": 1, "seven": 1, "eight": 1, "nine": 1, "double": 0,
               "triple": 0}
MONTHS = _words("january february march april may june july august september october "
                "november december")
# digit counts of whole dictated numbers: a US ZIP code, local and US phone numbers (with
# the 1), cards (Amex, most others). Lengths a longer number passes through on its way
# (12 digits of a card) are left out: those wait for more digits or for the longest hold.
# When the words say what is dictated, only its lengths count (7 digits of a card are not
# a phone number).
WHOLE_NUMBERS = frozenset({5, 7, 10, 11, 15, 16})
WHOLE_BY_KIND = ((re.compile(r"\b(card|visa|mastercard|amex|credit|debit)\b", re.I),
                  frozenset({15, 16})),
                 (re.compile(r"\b(zip|post ?code|postal)\b", re.I), frozenset({5, 9})),
                 (re.compile(r"\b(phone|mobile|cell|call|reach|number)\b", re.I),
                  frozenset({7, 10, 11})))
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
    """"incomplete", "dictating", "complete" or None (no cue) for the transcript of a turn
    so far."""
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
    if digits == 4 and (before in MONTHS or before[:1].isdigit()):
        return "complete"  # a year closing a date ("March 14th, 2026")
    if digits >= 3:
        whole = next((lengths for kind, lengths in WHOLE_BY_KIND if kind.search(stripped)),
                     WHOLE_NUMBERS)
        return "complete" if digits in whole else "incomplete"
    if stripped.endswith("?"):
        return None  # a question ("what's your phone number?") is the caller's whole turn
    return "dictating" if DICTATION.search(stripped) else None
