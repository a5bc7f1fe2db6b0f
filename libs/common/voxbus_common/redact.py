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
_CARD = re.compile(r"(?<!\d)(?:\d" + _SEP + r"){12,18}\d(?!\d)")
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
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


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
        for kind in self.kinds:
            pattern, replace = _RULES[kind]
            text = pattern.sub(replace, text)
        return text
