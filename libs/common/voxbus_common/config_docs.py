"""The settings reference of docs/configuration.md, generated from config.py.

Every field is listed under its section class (CoreSettings, GatewaySettings, ...) with its
environment variable(s), its default and the comments written next to it, so the
reference cannot miss a setting or keep a removed one:
tests/unit/test_config_docs.py fails on drift. Regenerate with
`python -m voxbus_common.config_docs`.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from voxbus_common.config import SECTIONS, SERVICES, Settings
from voxbus_common.doc_blocks import write_block

BEGIN = "<!-- settings: generated from libs/common/voxbus_common/config.py -->"
END = "<!-- /settings -->"
_FIELD = re.compile(r"^    (\w+): [^=]+=")


def env_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"VOXBUS_{name.upper()}"]


def _notes(section: type[BaseSettings]) -> dict[str, str]:
    """field -> the comments written above it and after it in its section's class."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(section).splitlines():
        stripped = line.strip()
        if stripped.startswith("# "):
            pending.append(stripped[2:])
        field = _FIELD.match(line)
        if field and field.group(1) in section.model_fields:
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            out[field.group(1)] = "; ".join(filter(None, [" ".join(pending), trailing]))
            pending = []
        elif not stripped:
            pending = []
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
    out = [BEGIN, "", "Each service reads its own sections (`config.SERVICES`; mypy rejects a "
           "read of any other):", "", "| service | class | sections |", "|---|---|---|"]
    for service, cls in SERVICES.items():
        parts = ", ".join(f"`{base.__name__}`" for base in cls.__bases__)
        out.append(f"| {service} | `{cls.__name__}` | {parts} |")
    out.append("")
    for section in SECTIONS:
        notes = _notes(section)
        summary = " ".join((section.__doc__ or "").split()).rstrip(".")
        out += [f"### {summary} (`{section.__name__}`)", "",
                "| variable | default | meaning |", "|---|---|---|"]
        for name in section.model_fields:
            names = " or ".join(f"`{env}`" for env in env_names(name))
            note = notes.get(name, "").replace("|", "\\|")
            out.append(f"| {names} | {_default(name)} | {note} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def write(path: Path) -> bool:
    return write_block(path, BEGIN, END, reference())


if __name__ == "__main__":
    target = Path("docs/configuration.md")
    print(f"{target}: {'updated' if write(target) else 'up to date'}")
