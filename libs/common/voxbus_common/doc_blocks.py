"""Generated blocks inside hand-written docs: the text between two marker lines is
rewritten from the code (the subject table, the settings reference), the rest is kept."""

from __future__ import annotations

from pathlib import Path


def block(text: str, begin: str, end: str) -> str:
    """The block from `begin` through `end` (markers included); ValueError if missing."""
    return text[text.index(begin):text.index(end) + len(end)]


def write_block(path: Path, begin: str, end: str, generated: str) -> bool:
    """Replace the block in `path` with `generated` (markers included); True if it changed."""
    text = path.read_text()
    updated = text.replace(block(text, begin, end), generated, 1)
    path.write_text(updated)
    return updated != text
