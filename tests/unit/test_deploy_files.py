"""Deployment files that must agree with the rest of the repository: the images' pins, the
chart's copies of the Grafana dashboard and SLO rules, and skaffold.yaml (no skaffold here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
REQS = ROOT / "deploy" / "docker" / "requirements"
CHART = ROOT / "deploy" / "helm" / "voxbus"
IMAGES = {"voxbus-gateway": "gateway", "voxbus-stt": "stt", "voxbus-llm": "llm",
          "voxbus-tts": "tts", "voxbus-memory": "memory", "voxbus-llm-server": "llmServer"}


def pins(path: Path) -> dict[str, str]:
    """name -> version of each `name[extras]==version` line (PEP 503 names)."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
    return out


def test_image_pins_match_the_tested_workspace() -> None:
    workspace = pins(ROOT / "requirements.txt")
    constraints = pins(REQS / "constraints.txt")
    for req in sorted(REQS.glob("*.txt")):
        if req.name == "constraints.txt":
            continue
        for name, version in pins(req).items():
            if name in workspace:
                assert version == workspace[name], (
                    f"{req.name}: {name}=={version}, requirements.txt pins {workspace[name]}")
            assert constraints.get(name) == version, (
                f"{req.name}: {name}=={version} but constraints.txt has {constraints.get(name)}")


def test_constraints_follow_requirements() -> None:
    constraints = pins(REQS / "constraints.txt")
    stale = {name: (version, constraints[name])
             for name, version in pins(ROOT / "requirements.txt").items()
             if name in constraints and constraints[name] != version}
    assert not stale, f"run `make docker-constraints` (pinned, constrained): {stale}"


def test_chart_copies_of_the_dashboard_and_rules_are_current() -> None:
    for name in ("voxbus-latency.json", "voxbus-slo-rules.yml"):
        original = (ROOT / "deploy" / "grafana" / name).read_bytes()
        assert (CHART / "files" / name).read_bytes() == original, (
            f"cp deploy/grafana/{name} deploy/helm/voxbus/files/{name}")


def skaffold() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    return doc


def test_skaffold_builds_every_image_from_its_dockerfile() -> None:
    doc = skaffold()
    assert re.fullmatch(r"skaffold/v4beta\d+", doc["apiVersion"])
    assert doc["kind"] == "Config"
    artifacts = {a["image"]: a for a in doc["build"]["artifacts"]}
    assert set(artifacts) == set(IMAGES)
    for image, artifact in artifacts.items():
        assert artifact["context"] == "."
        dockerfile = ROOT / artifact["docker"]["dockerfile"]
        assert dockerfile.exists(), dockerfile
        assert dockerfile.name == f"{image.removeprefix('voxbus-')}.Dockerfile"


def test_skaffold_deploys_the_chart_with_the_built_images() -> None:
    doc = skaffold()
    (release,) = doc["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    templates = release["setValueTemplates"]
    for image, key in IMAGES.items():
        var = image.replace("-", "_")  # Skaffold's template names
        assert templates[f"{key}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{key}.image.tag"] == (
            f"{{{{.IMAGE_TAG_{var}}}}}@{{{{.IMAGE_DIGEST_{var}}}}}")
        assert values[key]["image"]["repository"] == image  # the chart's default agrees


def test_skaffold_dev_profile_overrides_real_values() -> None:
    doc = skaffold()
    profile = next(p for p in doc["profiles"] if p["name"] == "dev")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    set_values = next(p["value"] for p in profile["patches"]
                      if p["path"] == "/deploy/helm/releases/0/setValues")
    for dotted in set_values:  # a typo would be rejected by the schema only at deploy time
        node = values
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"dev profile sets unknown {dotted}"
            node = node[part]
