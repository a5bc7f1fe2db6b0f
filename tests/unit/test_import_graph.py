"""No import circles inside a service (a part that needs its owner gets a Protocol, as
voxbus_gateway/ports.py does), and no service imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
PACKAGES = {f"voxbus_{p.name}" for p in SERVICES}


def modules(package_dir: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir).with_suffix("").parts
        name = ".".join((package, *parts)).removesuffix(".__init__")
        out[name] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules `path` imports (any import statement, TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {m for m in found if m in known}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_a_service_has_no_import_circle(service: Path) -> None:
    package = f"voxbus_{service.name}"
    known = modules(service / package, package)
    graph = {name: imports(path, known) - {name} for name, path in known.items()
             if not name.endswith("__main__")}
    graph = {name: deps & graph.keys() - {package} for name, deps in graph.items()}
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_a_service_imports_no_other_service(service: Path) -> None:
    own = f"voxbus_{service.name}"
    for path in (service / own).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            others = {n.split(".")[0] for n in names} & (PACKAGES - {own})
            assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_the_cycle_finder_finds_one() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
