"""The settings reference of docs/configuration.md, generated from config.py.

Every field of `Settings` is listed under its section (the `# gateway`, `# stt`, ... lines
of config.py) with its environment variable(s), its default and the comments written next
to it, so the reference cannot miss a setting or keep a removed one:
tests/unit/test_config_docs.py fails on drift. Regenerate with
`python -m voxbus_common.config_docs`.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pydantic import AliasChoices

from voxbus_common import config
from voxbus_common.config import Settings

BEGIN = "<!-- settings: generated from libs/common/voxbus_common/config.py -->"
END = "<!-- /settings -->"
_FIELD = re.compile(r"^    (\w+): [^=]+=")
_SECTION = re.compile(r"^    # ([a-z][a-z ]+)$")


def env_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"VOXBUS_{name.upper()}"]


def _notes() -> dict[str, tuple[str, str]]:
    """field -> (section, its comments), read from the class body of config.py."""
    out: dict[str, tuple[str, str]] = {}
    section, previous_blank = "bus", False
    pending: list[str] = []
    lines = inspect.getsource(config.Settings).splitlines()
    for line in lines:
        stripped = line.strip()
        header = _SECTION.match(line)
        if header and previous_blank:
            section, pending = header.group(1), []
        elif stripped.startswith("# "):
            pending.append(stripped[2:])
        field = _FIELD.match(line)
        if field and field.group(1) in Settings.model_fields:
            trailing = line.split("  # ", 1)[1] if "  # " in line else ""
            out[field.group(1)] = (section, "; ".join(filter(None, [" ".join(pending),
                                                                   trailing.strip()])))
            pending = []
        elif not stripped:
            pending = []
        previous_blank = not stripped
    return out


def _default(name: str) -> str:
    value = Settings.model_fields[name].default
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'`"{shown}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def reference() -> str:
    notes = _notes()
    sections: dict[str, list[str]] = {}
    for name in Settings.model_fields:
        section, note = notes.get(name, ("bus", ""))
        names = " or ".join(f"`{env}`" for env in env_names(name))
        note = note.replace("|", "\\|")
        sections.setdefault(section, []).append(f"| {names} | {_default(name)} | {note} |")
    out = [BEGIN, ""]
    for section, rows in sections.items():
        out += [f"### {section}", "", "| variable | default | meaning |", "|---|---|---|",
                *rows, ""]
    out.append(END)
    return "\n".join(out)


def write(path: Path) -> bool:
    text = path.read_text()
    begin, end = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:begin] + reference() + text[end:]
    path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    target = Path("docs/configuration.md")
    print(f"{target}: {'updated' if write(target) else 'up to date'}")
