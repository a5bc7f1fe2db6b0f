"""Install the smart-turn v3.2 end-of-turn model (ONNX, BSD-2-Clause) for the STT service.

The model ships inside the `pipecat-ai` wheel on PyPI; no model hub is reachable here. This
script downloads the pinned wheel with pip (no dependencies: Pipecat itself is never
installed), extracts the model, checks its sha256 and writes it next to the STT package,
where `voxbus_stt.smart_turn` finds it. `make install` and the STT image run it.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "pipecat-ai==1.14.0"
WHEEL_GLOB = "pipecat_ai-1.14.0-*.whl"
MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
LICENSE_MEMBER = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
MODEL_NAME = "smart-turn-v3.2-cpu.onnx"
# sha256 of the model inside that wheel (also the one on the upstream model card), so a
# republished wheel cannot swap it
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
DEFAULT_DEST = Path(__file__).resolve().parents[2] / "services/stt/voxbus_stt/models"


def download_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(WHEEL_GLOB))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "-d", str(cache), WHEEL], check=True)
        found = sorted(cache.glob(WHEEL_GLOB))
    if not found:
        raise SystemExit(f"pip downloaded no {WHEEL_GLOB} into {cache}")
    return found[-1]


def install(dest: Path, cache: Path) -> Path:
    target = dest / MODEL_NAME
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == MODEL_SHA256:
        return target  # already there and intact
    with zipfile.ZipFile(download_wheel(cache)) as whl:
        model = whl.read(MEMBER)
        license_text = whl.read(LICENSE_MEMBER)
    digest = hashlib.sha256(model).hexdigest()
    if digest != MODEL_SHA256:
        raise SystemExit(f"{MEMBER} in {WHEEL} has sha256 {digest}, expected {MODEL_SHA256}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "LICENSE.smart-turn").write_bytes(
        b"smart-turn v3.2 (pipecat-ai/smart-turn-v3), extracted from the " + WHEEL.encode()
        + b" wheel; BSD-2-Clause:\n\n" + license_text)
    with tempfile.NamedTemporaryFile(dir=dest, delete=False) as tmp:
        tmp.write(model)
    Path(tmp.name).chmod(0o644)  # (a temporary file is 0600: the images run as a user)
    Path(tmp.name).replace(target)  # atomic: a half-written model is never loaded
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--cache", type=Path, default=Path(".tools/cache"))
    args = parser.parse_args()
    print(f"installed {install(args.dest, args.cache)} (sha256 {MODEL_SHA256[:12]}…)")


if __name__ == "__main__":
    main()
