"""What memory adds to the system prompt: this call's summary and the caller's earlier calls.

Memory sends only the turns after the summary verbatim, so the summary has to reach the
model some other way: a second system message, right after the (cached, unchanging) system
prompt, where a small model still attends to it.
"""

from __future__ import annotations


def context_preamble(summary: str, caller_memory: str) -> str:
    """The text of that system message ("" when memory has nothing); paragraphs separated
    by blank lines (it starts with one: strip it when it stands alone)."""
    parts: list[str] = []
    if summary.strip():
        parts.append(f"Earlier in this call: {' '.join(summary.split())}")
    if caller_memory.strip():
        notes = "\n".join(line.strip() for line in caller_memory.strip().splitlines()
                          if line.strip())
        parts.append("From this caller's previous calls (use only when relevant):\n" + notes)
    return "".join(f"\n\n{p}" for p in parts)
