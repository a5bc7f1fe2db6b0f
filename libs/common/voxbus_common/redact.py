"""PII redaction for anything voxbus stores, logs, traces or shows to operators: card numbers
(Luhn-checked), SSN-like numbers, e-mail addresses and phone numbers become typed
placeholders such as "[card]", so a transcript stays readable (the words and punctuation
around a number stay) and a reviewer still sees what kind of thing was said.

Numbers are matched on what the speech recogniser writes, not on one layout. Whisper writes
one spoken card as "4111 1111 1111 1111", "4111-1111-...", "4,111,111,111,111,111",
"4.111.111...", as words ("four one one one", "oh", "double five", "forty-one"), with scale
words ("532 trillion, 15,112,830,366") or a mix, and often gets the digit count wrong. So
numbers are first read into *runs*: digit groups and number words joined by spaces, commas,
dots, dashes, parentheses and scale words. Each run is then classified:

- card: the longest Luhn-valid stretch of 13–19 digits made of whole groups, found from each
  group on (a card read next to other numbers is still found) -> "[card]". Groups written
  onto it without a space ("4,111,...,111,009") are part of it; other neighbours in the run
  become "[number]" from 5 digits on (shorter ones, "press 1", "12 25", stay).
- a run of 13 or more digits without a Luhn-valid stretch -> "[number]" (policy of the card
  kind). Such a run is nearly always a card whose digit count the recogniser garbled (a
  spoken 16-digit card came out as the 22-digit "4,111,111,111,111,111,111,111"), or another
  account number. The target is no card number in any stored record, whatever the layout.
- ssn: 9 digits in a valid SSA range (area not 000/666/9xx, group not 00, serial not 0000).
- phone: "+" and 7–15 digits; 10–12 digits in any layout; 7–9 digits when dictated digit by
  digit or laid out as a phone number ("555-0132", "20 7946 0958").

Left alone: amounts ("$1,250.00", "1,000,000,000", under 13 digits after a currency sign), IPv4
addresses, times ("7:30"), dates, years and every run shorter than 7 digits. A number glued to
letters ("c8123456789", "call-4155550132") is an identifier, not speech. Regexes are
precompiled and linear (runs and e-mail parts are bounded), so hostile input cannot stall it.

Live views need more: `Redactor.partial` for a partial transcript (a number still being
spoken is hidden from its 7th digit on) and `StreamRedactor` for LLM deltas (what may still
grow into PII is held back until the next delta or the end of the reply).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise

KINDS = ("card", "ssn", "email", "phone")

_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen")
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_DIGITS = {w: str(i) for i, w in enumerate(_UNITS)} | {"oh": "0", "o": "0"}
_WORD_DIGITS |= {w: str(10 + i) for i, w in enumerate(_TEENS)}
_TENS_DIGIT = {w: str(2 + i) for i, w in enumerate(_TENS)}
_UNIT = "|".join(("oh", "o", *_UNITS))

_TOKEN = re.compile(
    r"(?<!\w)(?<![^\W\d][\-_])(?P<num>\d+)(?!\w)"  # digits, not part of an identifier
    rf"|\b(?P<rep>double|triple)[ \-]+(?P<of>{'|'.join(_UNITS)}|oh|o|\d)\b(?!')"
    rf"|\b(?P<tens>{'|'.join(_TENS)})(?:[ \-](?P<unit>{'|'.join(_UNITS[1:])}))?\b"
    rf"|\b(?P<word>{_UNIT}|{'|'.join(_TEENS)})\b(?!')",
    re.IGNORECASE)
_SCALE = r"(?:hundred|thousand|million|billion|trillion|quadrillion)s?"
_GAP = re.compile(rf"[ \t]*(?:[,.\-–—()][ \t]*){{0,2}}(?:{_SCALE}[ \t]*(?:[,.\-][ \t]*)?)?",
                  re.IGNORECASE)
_GAP_MAX = 24  # a gap longer than this ends a run (checked before the regex)
_PENDING = re.compile(r"\b(?:double|triple)[ \-]+$", re.IGNORECASE)
_HINT = re.compile(rf"[\d@]|\b(?:{_UNIT}|{'|'.join(_TEENS)}|{'|'.join(_TENS)})\b",
                   re.IGNORECASE)
_EMAIL = re.compile(  # bounded parts, one start per word: linear on any input
    r"(?<![\w.+\-])[\w.+\-]{1,64}@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,8}\b")
_CURRENCY = "$£€¥₹"
_MAX_RUN_TOKENS = 64  # longer runs are no speech: replaced whole, never searched
MIN_DIGITS = 7  # shorter runs are never redacted (prices, times, party sizes, years)


def luhn_valid(digits: str) -> bool:
    """The checksum every payment card number carries (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def ssn_valid(digits: str) -> bool:
    """9 digits the SSA could have issued."""
    return (len(digits) == 9 and digits[:3] not in ("000", "666") and digits[0] != "9"
            and digits[3:5] != "00" and digits[5:] != "0000")


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    digits: str
    spoken: bool  # a number word, not digits


def _token(m: re.Match[str]) -> _Token:
    if m["num"] is not None:
        raw = m["num"]
        digits = raw if raw.isascii() else "".join(str(int(c)) for c in raw)
        return _Token(m.start(), m.end(), digits, False)
    if m["rep"] is not None:
        of = m["of"].lower()
        unit = _WORD_DIGITS.get(of) or str(int(of))
        return _Token(m.start(), m.end(), unit * (2 if m["rep"].lower() == "double" else 3),
                      True)
    if m["tens"] is not None:
        unit = _WORD_DIGITS[m["unit"].lower()] if m["unit"] else "0"
        return _Token(m.start(), m.end(), _TENS_DIGIT[m["tens"].lower()] + unit, True)
    return _Token(m.start(), m.end(), _WORD_DIGITS[m["word"].lower()], True)


def _joins(gap: str) -> bool:
    """True if `gap`, the text between two number tokens, keeps them in one run."""
    return len(gap) <= _GAP_MAX and _GAP.fullmatch(gap) is not None


def _runs(text: str) -> list[list[_Token]]:
    """Number tokens joined by separators; a leading "oh"/"o" is a word, not a zero."""
    runs: list[list[_Token]] = []
    run: list[_Token] = []
    for m in _TOKEN.finditer(text):
        tok = _token(m)
        if run:
            if _joins(text[run[-1].end:tok.start]):
                run.append(tok)
                continue
            runs.append(run)
        run = [] if tok.spoken and text[tok.start:tok.end].lower() in ("oh", "o") else [tok]
    if run:
        runs.append(run)
    return runs


def _ndigits(tokens: list[_Token]) -> int:
    return sum(len(t.digits) for t in tokens)


def _gaps(text: str, tokens: list[_Token]) -> list[str]:
    return [text[a.end:b.start] for a, b in pairwise(tokens)]


def _ordinary(text: str, tokens: list[_Token]) -> bool:
    """Numbers that are no one's data: thousands-grouped money and counts ("1,000,000,000",
    "12,500.50"), IPv4 addresses, a list of years ("2024, 2025, 2026")."""
    if any(t.spoken for t in tokens):
        return False
    gaps = _gaps(text, tokens)
    lens = [len(t.digits) for t in tokens]
    if all(n == 4 and 1900 <= int(t.digits) <= 2099 for n, t in zip(lens, tokens, strict=True)):
        return True
    if len(tokens) == 4 and all(g == "." for g in gaps) and all(
            n <= 3 and int(t.digits) <= 255 for n, t in zip(lens, tokens, strict=True)):
        return True
    decimals = len(tokens) > 1 and gaps[-1] == "." and lens[-1] <= 2
    body, body_gaps = (tokens[:-1], gaps[:-1]) if decimals else (tokens, gaps)
    grouped = (len(body) > 1 and 1 <= len(body[0].digits) <= 3
               and all(len(t.digits) == 3 for t in body[1:])
               and all(g.rstrip() == "," for g in body_gaps))
    return grouped and (decimals or body[-1].digits == "000")


def _dictated(tokens: list[_Token]) -> bool:
    """Read out digit by digit ("four one five", "4 1 5", "double five")."""
    return all(t.spoken or len(t.digits) == 1 for t in tokens)


def _ssn_shaped(text: str, tokens: list[_Token]) -> bool:
    """123-45-6789 in any separators, 123456789, dictated, or Whisper's 123,456,789 (but
    not a list: "101, 102, 103")."""
    lens = [len(t.digits) for t in tokens]
    return (lens in ([3, 2, 4], [9]) or _dictated(tokens)
            or (lens == [3, 3, 3] and all(g == "," for g in _gaps(text, tokens))))


def _phone_shaped(text: str, tokens: list[_Token]) -> bool:
    """7–9 digits that read as a phone number: dictated digit by digit, or 3-4 / 2-4,3-4,3-4
    groups not separated by thousands commas."""
    if len(tokens) >= 7 and _dictated(tokens):
        return True
    if any(t.spoken for t in tokens) or any("," in g for g in _gaps(text, tokens)):
        return False
    lens = [len(t.digits) for t in tokens]
    return (lens == [3, 4] or (len(lens) == 3 and 2 <= lens[0] <= 4
                               and all(3 <= n <= 4 for n in lens[1:])))


@dataclass
class _Plan:
    """Replacements for one text: (start, end, placeholder), in order."""

    text: str
    kinds: frozenset[str]
    partial: bool = False
    out: list[tuple[int, int, str]] = field(default_factory=list)

    def replace(self, tokens: list[_Token], label: str, prefix_ok: bool = True) -> None:
        start = tokens[0].start
        before = self.text[start - 1:start] if start else ""
        if prefix_ok and (before == "+" or (before == "(" and len(tokens) > 1 and ")" in
                                            self.text[tokens[0].end:tokens[1].start])):
            start -= 1
        self.out.append((start, tokens[-1].end, label))

    def run(self, tokens: list[_Token]) -> None:
        n = _ndigits(tokens)
        if n < MIN_DIGITS:
            return
        start = tokens[0].start
        before = self.text[max(0, start - 2):start].strip()[-1:]
        if before and before in _CURRENCY and n < 13:
            return  # an amount (13 digits and more is no amount anyone says: a card)
        if len(tokens) > _MAX_RUN_TOKENS:
            if "card" in self.kinds:
                self.replace(tokens, "[number]")
            return
        if before == "+" and n <= 15 and "phone" in self.kinds:
            self.replace(tokens, "[phone]")
            return
        if "card" in self.kinds and n >= 13 and self._cards(tokens):
            return
        if (not self.rest(tokens) and self.partial and "card" in self.kinds
                and _joins(self.text[tokens[-1].end:])):
            self.replace(tokens, "[number]")  # still being spoken: maybe a card's start

    def _cards(self, tokens: list[_Token]) -> bool:
        """Cards as the longest Luhn-valid stretch of whole groups from each group on; False
        (nothing planned) when the run holds none."""
        found: list[tuple[int, int]] = []
        i = 0
        while i < len(tokens):
            digits, end = "", -1
            for j in range(i, len(tokens)):
                digits += tokens[j].digits
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_valid(digits):
                    end = j
            if end < 0:
                i += 1
            else:
                found.append((i, end))
                i = end + 1
        if not found:
            return False
        found = self._glued(tokens, found)
        prev = 0
        for i, end in [*found, (len(tokens), len(tokens))]:
            piece = tokens[prev:i]
            if piece and not self.rest(piece) and _ndigits(piece) >= 5:
                self.replace(piece, "[number]", prefix_ok=False)  # more of the card
            if i < len(tokens):
                self.replace(tokens[i:end + 1], "[card]", prefix_ok=not prev and not i)
            prev = end + 1
        self.out.sort()
        return True

    def _glued(self, tokens: list[_Token], found: list[tuple[int, int]]
               ) -> list[tuple[int, int]]:
        """Cards grown over the groups written onto them without a space ("[card],009" is
        one garbled number, "[card] 12 25" a card and an expiry date)."""
        def tight(a: int) -> bool:
            return not any(c.isspace() for c in self.text[tokens[a].end:tokens[a + 1].start])

        grown: list[tuple[int, int]] = []
        for k, (i, end) in enumerate(found):
            low = grown[-1][1] + 1 if grown else 0
            high = found[k + 1][0] - 1 if k + 1 < len(found) else len(tokens) - 1
            while i > low and tight(i - 1):
                i -= 1
            while end < high and tight(end):
                end += 1
            grown.append((i, end))
        return grown

    def rest(self, tokens: list[_Token]) -> bool:
        """Everything but the card search; True when it planned a replacement."""
        n = _ndigits(tokens)
        if n < MIN_DIGITS:
            return False
        if n >= 13:
            label = ("[number]" if "card" in self.kinds
                     else "[phone]" if "phone" in self.kinds and n <= 15 else "")
        elif _ordinary(self.text, tokens):
            return False
        elif (n == 9 and "ssn" in self.kinds and _ssn_shaped(self.text, tokens)
              and ssn_valid("".join(t.digits for t in tokens))):
            label = "[ssn]"
        elif "phone" in self.kinds and (n >= 10 or _phone_shaped(self.text, tokens)):
            label = "[phone]"
        else:
            label = ""
        if label:
            self.replace(tokens, label)
        return bool(label)

    def apply(self) -> str:
        parts: list[str] = []
        pos = 0
        for start, end, label in self.out:
            parts += [self.text[pos:start], label]
            pos = end
        parts.append(self.text[pos:])
        return "".join(parts)


def _redact(text: str, kinds: frozenset[str], partial: bool) -> str:
    if "email" in kinds and "@" in text:
        text = _EMAIL.sub("[email]", text)
    numbers = kinds - {"email"}
    if not numbers:
        return text
    plan = _Plan(text, numbers, partial)
    for run in _runs(text):
        plan.run(run)
    return plan.apply() if plan.out else text


@dataclass(frozen=True)
class Redactor:
    """Replaces the configured kinds of PII; an empty set of kinds leaves text untouched."""

    kinds: tuple[str, ...] = KINDS

    @classmethod
    def from_setting(cls, value: str) -> Redactor:
        """"card,ssn,email,phone" (the default), "all", or "none"/"" to switch it off."""
        names = [k.strip().lower() for k in value.split(",") if k.strip()]
        if names in (["none"], []):
            return cls(())
        if names == ["all"]:
            return cls(KINDS)
        unknown = sorted(set(names) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown redaction kind(s) {', '.join(unknown)} "
                             f"(known: {', '.join(KINDS)}, all, none)")
        return cls(tuple(k for k in KINDS if k in names))

    def __call__(self, text: str) -> str:
        if not self.kinds or not _HINT.search(text):  # most log lines: one C-speed scan
            return text
        return _until_stable(text, frozenset(self.kinds), partial=False)

    def partial(self, text: str) -> str:
        """For a partial transcript, a prefix of what is being said: a run at its end may be
        the start of a card, so from 7 digits on it is replaced too ("[number]")."""
        if not self.kinds or not _HINT.search(text):
            return text
        return _until_stable(text, frozenset(self.kinds), partial=True)


def _until_stable(text: str, kinds: frozenset[str], partial: bool) -> str:
    """Passes until nothing changes: a placeholder can expose a neighbour that one pass
    could not see (a number glued to an address; found by fuzzing). Every change removes
    digits or an "@", so this ends; one extra pass when there was anything to redact."""
    while True:
        out = _redact(text, kinds, partial=partial)
        if out == text:
            return out
        text = out


class StreamRedactor:
    """Redacts text that arrives in pieces (LLM token deltas), where a number or an e-mail
    address is split across deltas: what may still grow into PII (the word being written,
    a number run reaching the end) is held back until more text or `flush` decides it."""

    MAX_HELD = 4096  # never hold more than this (a run of digits without end)

    def __init__(self, redact: Redactor) -> None:
        self.redact = redact
        self.held = ""

    def push(self, delta: str) -> str:
        """What can be shown now (maybe ""), redacted."""
        text = self.held + delta
        if not self.redact.kinds:
            self.held = ""
            return text
        cut = _stable_prefix(text) if len(text) <= self.MAX_HELD else len(text)
        self.held = text[cut:]
        return self.redact(text[:cut])

    def flush(self) -> str:
        """The rest, redacted (the stream ended)."""
        text, self.held = self.held, ""
        return self.redact(text)


def _stable_prefix(text: str) -> int:
    """Length of the prefix that no later text can turn into more PII: up to the last white
    space, and before a number run that reaches the end."""
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
    pending = _PENDING.search(text, 0, cut)  # "double " waits for its digit
    if pending:
        cut = pending.start()
    runs = _runs(text)
    if runs:
        last = runs[-1]
        if last[-1].end <= cut and _joins(text[last[-1].end:cut]):
            start = last[0].start
            cut = start - 1 if text[start - 1:start] in ("+", "(") and start else start
        elif last[-1].end > cut:  # (the word being written is a number)
            cut = min(cut, last[0].start)
    return max(cut, 0)

