"""Integration fixtures: a real nats-server on a free port, the real llama.cpp server with
SmolLM2, and the five real services as separate processes, started once per test session."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from google.protobuf.message import Message
from nats.js.kv import KeyValue

from voxbus.v1.memory_pb2 import Session
from voxbus_cli.embedded import free_port, spawn, stop_all
from voxbus_cli.stack import Stack
from voxbus_common.nats_connect import server_list
from voxbus_common.session_pages import call_of, read_session
from voxbus_common.subjects import SESSIONS_BUCKET

M = TypeVar("M", bound=Message)
SPEECH = Path(__file__).resolve().parents[2] / "speech"


def words(text: str) -> str:
    """Lower-case words only, for transcript comparisons."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("voxbus")
    s = Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
              control_port=free_port(),
              env={"VOXBUS_LOG_LEVEL": "INFO",
                   # the platform under test with the smallest, fastest real model (the
                   # default model's own behaviour is measured by bench/tasks.py)
                   "VOXBUS_EMBEDDED_MODEL": "smollm2-135m",
                   "VOXBUS_AUDIOSOCKET_PORT": str(free_port()),
                   "VOXBUS_TRACE_DIR": str(workdir / "traces"),
                   # longer answers leave room to talk over the agent in barge-in tests
                   "VOXBUS_SYSTEM_PROMPT": "You are a friendly phone assistant. "
                                           "Always answer in three full sentences."})
    try:
        with s.running(timeout_s=240):
            yield s
    finally:
        for log in sorted((workdir / "logs").glob("*.log")):
            if log.name not in ("llama.log", "llama-background.log", "nats.log"):
                print(f"\n===== {log.name} (last lines) =====")
                print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))


def self_signed_certificate(folder: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """(cert, key, a client context trusting it) for 127.0.0.1, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key, ssl.create_default_context(cafile=str(cert))


def assert_services_alive(stack: Stack) -> None:
    dead = {name: p.returncode for name, p in stack.service_procs.items() if p.poll() is not None}
    assert not dead, f"services died: {dead}"


async def watch_until(kv: KeyValue, pattern: str, value: Callable[[Any], Awaitable[M | None]],
                      done: Callable[[M], bool], last: M, timeout_s: float) -> M:
    """Watch `pattern` and, after each update, `value(entry)` (None: not this one) until
    `done` holds for it (event-based, bounded)."""
    watcher = await kv.watch(pattern)
    deadline = time.monotonic() + timeout_s
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                entry = await watcher.updates(timeout=remaining)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            found = await value(entry)
            if found is None:
                continue
            last = found
            if done(last):
                return last
    finally:
        await watcher.stop()
    raise AssertionError(f"{pattern} never reached the expected state: {last}")


async def watch_kv(kv: KeyValue, key: str, kind: type[M], done: Callable[[M], bool],
                   timeout_s: float = 120.0) -> M:
    """Watch one KV entry until `done(value)`."""
    async def value(entry: Any) -> M | None:
        return kind.FromString(entry.value) if entry is not None and entry.value else None

    return await watch_until(kv, key, value, done, kind(), timeout_s)


async def wait_for_session(stack: Stack, call_id: str, done: Callable[[Session], bool],
                           timeout_s: float = 120.0) -> Session:
    """Watch the call's session until `done(session)`."""
    nc = await nats.connect(server_list(stack.nats_url))
    try:
        kv = await nc.jetstream().key_value(SESSIONS_BUCKET)
        return await watch_session(kv, call_id, done, timeout_s)
    finally:
        await nc.close()


async def watch_session(kv: KeyValue, call_id: str, done: Callable[[Session], bool],
                        timeout_s: float = 120.0) -> Session:
    """Watch the call's header and turn pages (session_pages.py) until `done` holds for
    the session they make (the test bucket is small: the watch covers all of it)."""
    async def value(entry: Any) -> Session | None:
        if entry is not None and call_of(entry.key) != call_id:
            return None
        return await read_session(kv, call_id) or Session()

    return await watch_until(kv, ">", value, done, Session(), timeout_s)


@contextmanager
def gateway_process(stack: Stack, name: str, env_extra: dict[str, str],
                    ssl_context: ssl.SSLContext | None = None
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Another gateway replica on the same bus with its own settings: (host:port, process)."""
    port = free_port()
    env = stack.service_env()
    env.update({"VOXBUS_GATEWAY_PORT": str(port), "VOXBUS_AUDIOSOCKET_PORT": "0", **env_extra})
    assert stack.log_dir is not None
    log = (stack.log_dir / f"gateway-{name}.log").open("ab")
    proc = spawn([sys.executable, "-m", "voxbus_gateway"], env=env, log=log)
    base = f"127.0.0.1:{port}"
    scheme = "https" if ssl_context else "http"
    deadline = time.monotonic() + 60
    while True:  # bounded readiness probe of a separate process
        try:
            with urllib.request.urlopen(f"{scheme}://{base}/healthz", timeout=1,
                                        context=ssl_context) as resp:
                if resp.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway {name} did not start") from None
            time.sleep(0.1)
    try:
        yield base, proc
    finally:
        stop_all([proc])
        log.close()


@contextmanager
def extra_gateway(stack: Stack, name: str, env_extra: dict[str, str],
                  ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Another gateway replica on the same bus with its own settings; yields host:port."""
    with gateway_process(stack, name, env_extra, ssl_context) as (base, _):
        yield base


@contextmanager
def running_instant_stack(workdir: Path, nats_monitor_port: int = 0,
                          **env: str) -> Iterator[Stack]:
    """The real services and nats-server with instant test models (voxbus_testkit.instant):
    the platform under test, not the models. `env`: extra VOXBUS_* settings;
    `nats_monitor_port`: the nats-server's monitoring endpoints."""
    from voxbus_testkit.instant import instant_env

    root = Path(__file__).resolve().parents[2]
    full = {**instant_env(), "PYTHONPATH": str(root), **env}
    with Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
               env=full, nats_monitor_port=nats_monitor_port).running() as stack:
        yield stack


def add_replica(stack: Stack, service: str, name: str, nats_url: str = ""
                ) -> tuple[subprocess.Popen[bytes], Path]:
    """One more replica of `service` on the stack's bus (stopped with the stack), reaching
    NATS at `nats_url` when given (through a tests/netsplit.py proxy)."""
    env = stack.service_env()
    env["VOXBUS_METRICS_PORT"] = "0"
    env["VOXBUS_NATS_URL"] = nats_url or stack.nats_url
    assert stack.log_dir is not None
    path = stack.log_dir / f"{service}-{name}.log"
    log = path.open("ab")
    proc = spawn([sys.executable, "-m", f"voxbus_{service}"], env=env, log=log)
    stack.procs.append(proc)
    stack._logs.append(log)  # closed with the stack
    return proc, path


def log_with(line: str, logs: dict[str, Path], timeout_s: float = 60.0) -> str:
    """The name of the first log (of other processes) that has `line`; a bounded wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, path in logs.items():
            if line in path.read_text(errors="replace"):
                return name
        time.sleep(0.05)
    raise AssertionError(f"no log has {line!r}")


async def wait_for_replicas(stack: Stack, service: str, count: int) -> None:
    """Until at least `count` replicas of `service` answer a ping (bounded)."""
    from voxbus_cli.stack import ping_services

    deadline = time.monotonic() + 60
    while (await ping_services(stack.nats_url)).get(service, 0) < count:
        assert time.monotonic() < deadline, f"{count} {service} replicas did not come up"
