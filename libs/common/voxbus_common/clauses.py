"""Cut a token stream into speakable clauses so TTS can start before the sentence ends."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2014]\s")
_MARKUP = re.compile(r"[*#_`~]|\[\d+\]")
# a first clause cut at a word boundary does not end on these (it would sound cut off)
_DANGLING = frozenset((
    "a", "an", "the", "and", "or", "but", "of", "to", "for", "with", "in", "on", "at", "by",
    "my", "your", "our", "is", "are", "was", "were", "be", "i", "we", "you", "it", "this",
    "that"))


def split_text(text: str) -> list[str]:
    """A whole text (a greeting, a routed answer) cut into clauses as a reply would be; its
    first clause may run to a comma ten words on (the whole text is known)."""
    splitter = ClauseSplitter(first_max_words=10)
    clauses = [c for word in text.split(" ") for c in splitter.push(word + " ")]
    return clauses + splitter.flush()


def clean_for_speech(text: str) -> str:
    """Drop markdown and collapse whitespace: nothing a voice should read aloud."""
    return " ".join(_MARKUP.sub("", text).split())


class ClauseSplitter:
    """Incremental splitter: feed deltas, receive finished clauses.

    A sentence end always cuts; a comma/semicolon cuts once the clause is long enough to
    sound natural (`min_clause_chars`; the first clause of a reply may be shorter, since
    time to first audio is what the caller waits for); a run-on is cut past `max_chars`.
    The first clause is also cut after `first_max_words` words (at a word that can end a
    phrase): a TTS that synthesizes a clause whole (Piper) then speaks ~1.5 s of audio after
    ~0.1 s instead of a long first sentence after ~0.5 s.
    """

    def __init__(self, min_clause_chars: int = 24, max_chars: int = 220,
                 first_min_clause_chars: int = 8, first_max_words: int = 6) -> None:
        self.min_clause_chars = min_clause_chars
        self.first_min_clause_chars = first_min_clause_chars
        self.first_max_words = first_max_words
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
        if not self._emitted and self.first_max_words:
            cut = self._first_words_cut()
            if cut:
                return cut
        if len(self._buf) > self.max_chars:
            space = self._buf.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return 0

    def _first_words_cut(self) -> int:
        """End of the first `first_max_words` whole words (more if they end dangling)."""
        words = list(re.finditer(r"\S+(?=\s)", self._buf))
        for m in words[self.first_max_words - 1: self.first_max_words + 3]:
            if m.group().lower().strip("\"'") not in _DANGLING:
                return m.end() + 1
        return 0
