"""Small in-memory knowledge base behind the LLM's `lookup` tool ("RAG on demand").

Retrieval runs only when the model asks for it, so it must be cheap, dependency-free and
deterministic: documents are cut into short passages at startup and ranked with Okapi BM25.
Nothing here needs a model download or a vector store.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

NO_MATCH = "No matching information was found."
SUFFIXES = (".md", ".txt")
MAX_PASSAGE_WORDS = 70  # a passage is read by a small model on a CPU: ~100 tokens, ~1-3 s
K1 = 1.5
B = 0.75
_ELLIPSIS = "..."

# Only words that carry no topic: a caller's question is short, and dropping "when"/"you"
# keeps the ranking on the words that matter ("open", "sunday").
STOP_WORDS = frozenset({
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "how",
    "i", "if", "im", "in", "is", "it", "its", "just", "me", "my", "no", "not", "of", "on", "or",
    "our", "please", "she", "so", "some", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "those", "to", "us", "was", "we", "were", "what", "when", "where",
    "which", "who", "why", "will", "with", "would", "you", "your",
})

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"[*_`]+|<[^>]+>")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit; `score` is 0.0 in the index and the BM25 score in results."""

    source: str
    title: str
    text: str
    score: float = 0.0


def stem(word: str) -> str:
    """Light suffix stripping so "parking", "parks" and "park" meet in one term.

    Rules, applied in order to alphabetic words of four letters or more: "-ies" -> "-y";
    "-es" after s/x/z/ch/sh -> drop "es"; a final "s" (not "ss", "us", "is") -> drop; then
    "-ing" / "-ed" -> drop, undoubling a final double consonant ("running" -> "run"); last,
    a trailing "e" goes so "close", "closed" and "closing" all become "clos". Stems need not
    be words, only consistent between passages and queries.
    """
    if len(word) < 4 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("es") and word[:-2].endswith(_SIBILANT_ENDINGS):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) > 4:
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    """Undo doubling ("stopp" -> "stop") but keep "add" and "ll"/"ss"/"zz": they are the word."""
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouylsz":
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed terms; queries and passages share it."""
    terms: list[str] = []
    for raw in _TOKEN.findall(text.lower()):
        word = raw.replace("’", "'")
        if word.endswith("'s"):
            word = word[:-2]
        word = word.replace("'", "")
        if word and word not in STOP_WORDS:
            terms.append(stem(word))
    return terms


def _clean_line(line: str) -> str:
    """Strip markdown a voice must not read; list items get a full stop to stay sentences."""
    line = _QUOTE.sub("", line)
    is_item = _LIST_ITEM.match(line) is not None
    line = _LIST_ITEM.sub("", line)
    line = " ".join(_MARKUP.sub("", _LINK.sub(r"\1", line)).split())
    if is_item and line and line[-1] not in ".!?:;,":
        line += "."
    return line


def _sections(text: str, default_title: str) -> list[tuple[str, list[str]]]:
    """(nearest heading, paragraphs) pairs; headings inside code fences are not headings."""
    sections: list[tuple[str, list[str]]] = [(default_title, [])]
    para: list[str] = []
    in_fence = False

    def flush() -> None:
        joined = " ".join(c for c in (_clean_line(line) for line in para) if c)
        if joined:
            sections[-1][1].append(joined)
        para.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        heading = None if in_fence else _HEADING.match(line)
        if heading is not None or not line.strip():
            flush()
            if heading is not None:
                sections.append((_clean_line(heading.group(2)) or default_title, []))
            continue
        para.append(line)
    flush()
    return [(title, paras) for title, paras in sections if paras]


def _split_long(paragraph: str, max_words: int) -> list[str]:
    """Cut an oversized paragraph at sentence ends (or word counts) so no passage sprawls."""
    if len(paragraph.split()) <= max_words:
        return [paragraph]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        pieces += [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
    return _pack(pieces, max_words)


def _pack(pieces: Iterable[str], max_words: int) -> list[str]:
    """Greedily merge consecutive pieces while the total stays within `max_words`."""
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > max_words:
            chunks.append(" ".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def _default_title(source: str) -> str:
    """Text before any heading is titled after its file: "opening-hours.md" -> "Opening hours"."""
    stem_name = Path(source).stem.replace("_", " ").replace("-", " ").strip()
    return stem_name[:1].upper() + stem_name[1:] if stem_name else source


def split_passages(text: str, source: str, max_words: int = MAX_PASSAGE_WORDS) -> list[Passage]:
    """Short, titled passages: small enough to quote to a caller, big enough to make sense."""
    passages: list[Passage] = []
    for title, paragraphs in _sections(text, _default_title(source)):
        pieces = [p for para in paragraphs for p in _split_long(para, max_words)]
        passages += [Passage(source, title, chunk) for chunk in _pack(pieces, max_words)]
    return passages


def _trim(text: str, max_chars: int) -> str:
    """Bound the tool result (it costs prompt tokens and latency) without cutting a word."""
    if len(text) <= max_chars:
        return text
    if max_chars <= len(_ELLIPSIS):
        return text[:max_chars]
    limit = max_chars - len(_ELLIPSIS)
    head = text[:limit]
    if not text[limit].isspace():
        cut = max(head.rfind(" "), head.rfind("\n"))
        if cut > 0:
            head = head[:cut]
    return head.rstrip(" \n,;:") + _ELLIPSIS


class KnowledgeBase:
    """BM25 index over passages, built once at startup and read-only afterwards.

    Title words are indexed with the text so a heading such as "Opening hours" makes its
    passage findable even when the body never repeats those words.
    """

    def __init__(self, passages: Iterable[Passage]) -> None:
        self._passages = tuple(passages)
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._lengths: list[int] = []
        for index, passage in enumerate(self._passages):
            counts = Counter(tokenize(f"{passage.title} {passage.text}"))
            self._lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self._postings.setdefault(term, []).append((index, tf))
        total = sum(self._lengths)
        self._avgdl = total / len(self._lengths) if total else 1.0
        n = len(self._passages)
        # Lucene's IDF variant: always positive, so a term in most passages still counts a bit.
        self._idf = {term: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5))
                     for term, p in self._postings.items()}

    @classmethod
    def from_folder(cls, path: Path) -> KnowledgeBase:
        """Index every *.md / *.txt below `path`; a bad file is skipped, a bad folder is fatal.

        Files are read in sorted order so passage order, and hence tie-breaking, is the same
        on every machine.
        """
        root = Path(path)
        if not root.exists():
            raise ValueError(f"knowledge folder does not exist: {root}")
        if not root.is_dir():
            raise ValueError(f"knowledge path is not a directory: {root}")
        files = sorted((p for p in root.rglob("*")
                        if p.suffix.lower() in SUFFIXES and p.is_file()),
                       key=lambda p: p.relative_to(root).as_posix())
        passages: list[Passage] = []
        for file in files:
            source = file.relative_to(root).as_posix()
            try:
                text = file.read_bytes().decode("utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("skipping unreadable knowledge file %s: %s", file, exc)
                continue
            if not text.strip():
                log.debug("skipping empty knowledge file %s", file)
                continue
            passages += split_passages(text, source)
        log.info("knowledge base %s: %d files, %d passages", root, len(files), len(passages))
        return cls(passages)

    def __len__(self) -> int:
        return len(self._passages)

    @property
    def passages(self) -> tuple[Passage, ...]:
        return self._passages

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """Best `k` passages with a positive score; equal scores keep document order.

        Each distinct query term counts once: a caller repeating a word should not skew it.
        """
        if k <= 0:
            return []
        scores: dict[int, float] = {}
        for term in dict.fromkeys(tokenize(query)):
            postings = self._postings.get(term)
            if not postings:
                continue
            idf = self._idf[term]
            for index, tf in postings:
                norm = K1 * (1.0 - B + B * self._lengths[index] / self._avgdl)
                scores[index] = scores.get(index, 0.0) + idf * tf * (K1 + 1.0) / (tf + norm)
        ranked = sorted((i for i, s in scores.items() if s > 0.0), key=lambda i: (-scores[i], i))
        return [replace(self._passages[i], score=scores[i]) for i in ranked[:k]]

    def answer_text(self, query: str, k: int = 2, max_chars: int = 500) -> str:
        """The `lookup` tool result: short, plain text the model can paraphrase aloud."""
        hits = self.search(query, k)
        if not hits:
            return NO_MATCH
        return _trim("\n".join(f"[{p.title}] {p.text}" for p in hits), max_chars)
