"""Coverage-guided campaigns over the fuzz suites' targets with atheris (libFuzzer).

Not part of `make test`: atheris is not a workspace dependency. Every module-level
Hypothesis test in tests/fuzz is a target, and so is every `fuzz_*` function (targets that
the suites run per edge, combined); atheris mutates the bytes that Hypothesis turns into an
example (`fuzz_one_input`), so the strategies and assertions stay the same.

    .venv/bin/pip install atheris==3.0.0      # a manylinux wheel for CPython 3.11
    .venv/bin/python -m tests.fuzz.atheris_driver --list
    .venv/bin/python -m tests.fuzz.atheris_driver test_edge_parsers:test_parse_json_object \\
        -max_total_time=600 -rss_limit_mb=4096

Arguments after the target go to libFuzzer (-runs, -max_total_time, a corpus folder, ...).
A failure prints the Hypothesis example and a crash file, as libFuzzer does.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

import tests.fuzz
import tests.fuzz.conftest  # registers and loads the Hypothesis profiles


def targets() -> dict[str, Callable[[bytes], Any]]:
    """`module:name` -> fuzz_one_input, for every module-level @given test_* and fuzz_*."""
    out: dict[str, Callable[[bytes], Any]] = {}
    for mod in pkgutil.iter_modules(tests.fuzz.__path__):
        if not mod.name.startswith("test_"):
            continue
        module = importlib.import_module(f"tests.fuzz.{mod.name}")
        for name, obj in vars(module).items():
            handle = getattr(obj, "hypothesis", None)
            if name.startswith(("test_", "fuzz_")) and handle is not None:
                out[f"{mod.name}:{name}"] = handle.fuzz_one_input
    return out


def main(argv: list[str]) -> int:
    found = targets()
    if len(argv) < 2 or argv[1] in ("-h", "--help", "--list"):
        print("targets:\n  " + "\n  ".join(sorted(found)))
        return 0
    if argv[1] not in found:
        print(f"unknown target {argv[1]!r}; --list shows them", file=sys.stderr)
        return 2
    try:
        atheris: Any = importlib.import_module("atheris")
    except ImportError:
        print("atheris is not installed: .venv/bin/pip install atheris==3.0.0", file=sys.stderr)
        return 2
    logging.disable(logging.CRITICAL)  # refused inputs log warnings; libFuzzer prints enough
    atheris.instrument_all()  # coverage of everything imported: the edges, codecs, parsers
    atheris.Setup([argv[0], *argv[2:]], found[argv[1]])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
