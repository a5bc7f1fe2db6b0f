"""Cut a token stream into speakable clauses so TTS can start before the sentence ends."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2014]\s")
_MARKUP = re.compile(r"[*#_`~]|\[\d+\]")


def clean_for_speech(text: str) -> str:
    """Drop markdown and collapse whitespace: nothing a voice should read aloud."""
    return " ".join(_MARKUP.sub("", text).split())


class ClauseSplitter:
    """Incremental splitter: feed deltas, receive finished clauses.

    A sentence end always cuts; a comma/semicolon cuts once the clause is long enough to
    sound natural (`min_clause_chars`; the first clause of a reply may be shorter, since
    time to first audio is what the caller waits for); a run-on is cut past `max_chars`.
    """

    def __init__(self, min_clause_chars: int = 24, max_chars: int = 220,
                 first_min_clause_chars: int = 8) -> None:
        self.min_clause_chars = min_clause_chars
        self.first_min_clause_chars = first_min_clause_chars
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut <= 0:
                break
            clause = clean_for_speech(self._buf[:cut])
            self._buf = self._buf[cut:]
            if clause:
                out.append(clause)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        rest = clean_for_speech(self._buf)
        self._buf = ""
        return [rest] if rest else []

    def _find_cut(self) -> int:
        m = _SENTENCE_END.search(self._buf)
        if m:
            return m.end()
        minimum = self.first_min_clause_chars if not self._emitted else self.min_clause_chars
        for m in _CLAUSE_END.finditer(self._buf):
            if m.end() >= minimum:
                return m.end()
        if len(self._buf) > self.max_chars:
            space = self._buf.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return 0
