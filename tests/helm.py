"""Run the pinned Helm 4 (`make tools` puts it in .tools/helm) against deploy/helm/voxbus.

The chart declares the official NATS chart as a dependency, which cannot be downloaded here.
Helm 4 refuses to template a chart whose declared dependency is missing from charts/, even
when its condition disables it, and `helm lint --strict` fails on it. So unless charts/ holds
the NATS chart (after `helm dependency build`), renders use a copy of the chart without the
dependency entry: every voxbus template renders as it would with it, only the NATS chart's
own objects are absent (docs/deploy.md, "What CI checks").
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "voxbus"
HELM = ROOT / ".tools" / "helm"
KUBE_VERSION = "1.33.0"  # what the renders and kubernetes-validate assume
KEDA = "keda.sh/v1alpha1"
MONITORING = "monitoring.coreos.com/v1"


def dependency_vendored(chart: Path = CHART) -> bool:
    return any((chart / "charts").glob("nats-*.tgz")) or (chart / "charts" / "nats").is_dir()


def chart_without_missing_nats(dest: Path) -> Path:
    """A copy of the chart that Helm renders offline (the NATS dependency entry dropped)."""
    if dependency_vendored():
        return CHART
    copy = dest / "voxbus"
    if not copy.exists():
        shutil.copytree(CHART, copy)
        meta = yaml.safe_load((copy / "Chart.yaml").read_text())
        meta.pop("dependencies")
        (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        (copy / "Chart.lock").unlink(missing_ok=True)
    return copy


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.stdout) if d]


def helm(*args: str) -> Result:
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def template(chart: Path, values: dict[str, Any] | None = None, *, api_versions: tuple[str, ...]
             = (), sets: tuple[str, ...] = (), release: str = "voxbus",
             namespace: str = "voice", values_dir: Path | None = None) -> Result:
    args = ["template", release, str(chart), "--namespace", namespace,
            "--kube-version", KUBE_VERSION]
    if values:
        assert values_dir is not None
        text = yaml.safe_dump(values)
        path = values_dir / f"values-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
        path.write_text(text)
        args += ["--values", str(path)]
    for api in api_versions:
        args += ["--api-versions", api]
    for s in sets:
        args += ["--set", s]
    return helm(*args)
