"""How the other commands find the stack `voxbus run` started, from any directory.

`voxbus run` writes `run.json` (URLs, the media token, the control API's admin token and
the NATS admin user: owner-only, mode 0600) into its state folder, `.voxbus` of the
directory it runs in (or VOXBUS_STATE_DIR), and leaves a pointer to that file in the user's
state folder ($XDG_STATE_HOME/voxbus/current, else ~/.local/state/voxbus/current). A
command looks in VOXBUS_STATE_DIR when it is set, else in `.voxbus` of this directory and
its parents, else follows the pointer; a file whose launcher is gone is stale and skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from voxbus_cli.nats_config import write_secret

RUN_FILE = "run.json"


def local_state_dir() -> Path:
    """Where `voxbus run` keeps its state (NATS store, logs, run.json)."""
    return Path(os.environ.get("VOXBUS_STATE_DIR", ".voxbus"))


def pointer_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "voxbus" / "current"


def write_running(state_dir: Path, doc: dict[str, Any]) -> Path:
    """Describe the running stack (owner-only: it holds tokens and passwords)."""
    path = (state_dir / RUN_FILE).resolve()
    write_secret(path, json.dumps(doc))
    with contextlib.suppress(OSError):  # (a read-only home: found from this folder only)
        write_secret(pointer_file(), str(path))
    return path


def clear_running(state_dir: Path) -> None:
    path = (state_dir / RUN_FILE).resolve()
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        if pointer_file().read_text().strip() == str(path):
            pointer_file().unlink()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # (no pid recorded: trust the file)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and _alive(doc.get("pid")) else {}


def candidates() -> list[Path]:
    """run.json files to try, in order."""
    if "VOXBUS_STATE_DIR" in os.environ:
        return [local_state_dir() / RUN_FILE]
    here = Path.cwd().resolve()
    found = [folder / ".voxbus" / RUN_FILE for folder in (here, *here.parents)]
    with contextlib.suppress(OSError):
        found.append(Path(pointer_file().read_text().strip()))
    return found


def find_running() -> dict[str, Any]:
    """The running stack's description, or {} when none is found."""
    for path in candidates():
        doc = _read(path)
        if doc:
            return doc
    return {}
