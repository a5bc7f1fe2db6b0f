"""PII redaction for anything voxbus stores, logs or traces: card numbers (Luhn-checked),
SSN-like numbers, e-mail addresses and phone numbers become typed placeholders such as
"[card]", so a transcript stays readable and a reviewer still sees what kind of thing was said.

Speech recognisers write numbers as digits with spaces or dashes ("4111 1111 1111 1111"),
so the patterns accept those separators. Order matters: a card number is also a long run of
digits, so cards are matched before phone numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("card", "ssn", "email", "phone")

_SEP = r"[ \-.]?"
_CARD = re.compile(r"(?<!\d)(?:\d" + _SEP + r"){12,}\d(?!\d)")  # a whole run of digit groups
_SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}([ \-]?)(?!00)\d{2}\1(?!0000)\d{4}(?!\d)")
_EMAIL = re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b")
_PHONE = re.compile(  # never a slice of a longer digit run (that is a card or an id)
    r"(?<![\w+])(?<!\d[ \-.])(?:\+\d{1,3}" + _SEP + r")?(?:\(\d{2,4}\)" + _SEP + r"|\d{2,4}"
    + _SEP + r")\d{3,4}" + _SEP + r"\d{3,4}(?![ \-.]?\d)")


def luhn_valid(digits: str) -> bool:
    """The checksum every payment card number carries (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    """Cards in a run of digit groups: the whole run, or the longest stretch of whole groups
    from each group on. A card read out next to other numbers ("press 1 4111 1111 1111
    1111", "... 1111 12 25") made the run fail the Luhn check as a whole and leaked
    (found by fuzzing). A run without separators stays one number."""
    groups = re.findall(r"\d+[ \-.]?", match.group(0))
    out: list[str] = []
    i = 0
    while i < len(groups):
        digits, end = "", -1
        for j in range(i, len(groups)):
            digits += groups[j].rstrip(" -.")
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                end = j
        if end < 0:
            out.append(groups[i])
            i += 1
        else:
            out.append("[card]" + groups[end][len(groups[end].rstrip(" -.")):])
            i = end + 1
    return "".join(out)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[phone]" if 7 <= len(digits) <= 15 else match.group(0)


_RULES: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = {
    "card": (_CARD, _card),
    "ssn": (_SSN, lambda m: "[ssn]"),
    "email": (_EMAIL, lambda m: "[email]"),
    "phone": (_PHONE, _phone),
}


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
        # Until nothing changes: a placeholder can expose a neighbour the pass could not see
        # ("(415) 555-0132(415) 555-0132", found by fuzzing). Every change removes digits
        # or an "@", so this ends (one extra pass when there was anything to redact).
        while True:
            out = text
            for kind in self.kinds:
                pattern, replace = _RULES[kind]
                out = pattern.sub(replace, out)
            if out == text:
                return out
            text = out
