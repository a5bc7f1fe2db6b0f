"""Starts and stops the whole platform on one machine: NATS, the local LLM server and the
five services as separate processes (exactly what runs in Kubernetes, one pod each)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import nats

from voxbus_cli.control_client import control_channel
from voxbus_cli.embedded import (
    EmbeddedError,
    free_port,
    spawn,
    start_llama,
    start_nats,
    stop_all,
)
from voxbus_cli.models import DEFAULT_MODEL, model
from voxbus_cli.nats_cluster import NatsCluster
from voxbus_cli.nats_config import new_passwords
from voxbus_common.config import Settings
from voxbus_common.nats_connect import connect_options, server_list

SERVICES = ("memory", "llm", "tts", "stt", "gateway")
CONTROL_AUTH_VARIABLES = ("VOXBUS_CONTROL_TOKENS", "VOXBUS_CONTROL_ADMIN_TOKENS",
                          "VOXBUS_CONTROL_JWT_SECRET", "VOXBUS_CONTROL_ALLOW_LOOPBACK")


def role_env(role: str, password: str) -> dict[str, str]:
    """What a process needs to connect as `role` (its NATS user)."""
    return {"VOXBUS_NATS_USER": role, "VOXBUS_NATS_PASSWORD": password}


async def ping_services(nats_url: str, wait_s: float = 0.3,
                        credentials: dict[str, str] | None = None) -> dict[str, int]:
    """Ready replicas per service that answered a ping (0: answered, not ready yet).
    `credentials`: a role's environment (role_env); else the process's own settings."""
    async def quiet(exc: Exception) -> None:  # a refused connect is the caller's to report
        pass

    settings = Settings()
    if credentials:
        settings = settings.model_copy(update={
            "nats_user": credentials["VOXBUS_NATS_USER"],
            "nats_password": credentials["VOXBUS_NATS_PASSWORD"]})
    # (max_reconnect_attempts=0 retries a refused first connect forever in nats-py 2.16)
    nc = await nats.connect(server_list(nats_url), connect_timeout=2, max_reconnect_attempts=1,
                            allow_reconnect=False, error_cb=quiet,
                            **connect_options(settings))  # the admin role, when set
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("vb.rpc.ping", b"", reply=inbox)
        status: dict[str, int] = {}
        deadline = time.monotonic() + wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=remaining)
            except (nats.errors.TimeoutError, TimeoutError):
                break
            body = json.loads(msg.data)
            status[body["service"]] = status.get(body["service"], 0) + int(body["ready"])
        return status
    finally:
        await nc.close()


@dataclass
class Stack:
    workdir: Path
    gateway_port: int = 8765
    nats_url: str = ""
    llm_base_url: str = ""
    llm_background_url: str = ""  # a second local server for summaries (config.py says why)
    control_port: int = 0  # the gateway's gRPC control API (0 = off; extra gateways: off)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # all process logs go here (else: inherited stderr)
    deps_log_dir: Path | None = None  # NATS and llama.cpp logs only (they are verbose)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    service_procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # Closed by default for `voxbus run`: the embedded NATS serves one user per role with its
    # permissions (docs/security.md), each service connects as its own; the admin role's
    # environment is in credentials["admin"] for the operator's tools.
    secure: bool = False
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    nats_monitor_port: int = 0  # the single nats-server's monitoring endpoints (0 = off)
    # The control API wants a token also on loopback: unless the env brings its own, the
    # stack makes an admin token for its gateway (control_channel() presents it).
    control_token: str = ""
    # >1: a NATS cluster of this many nodes on loopback instead of one server; streams and
    # KV buckets get min(3, size) replicas unless VOXBUS_NATS_REPLICAS says otherwise
    nats_cluster: int = 0
    cluster: NatsCluster | None = None

    @property
    def model_key(self) -> str:
        """The embedded model (`VOXBUS_EMBEDDED_MODEL`, `make run MODEL=`)."""
        return (self.env.get("VOXBUS_EMBEDDED_MODEL") or os.environ.get("VOXBUS_EMBEDDED_MODEL")
                or DEFAULT_MODEL)

    @property
    def control_target(self) -> str:
        return f"127.0.0.1:{self.control_port}"

    def control_channel(self) -> grpc.aio.Channel:
        """A channel to this stack's control API that presents its token."""
        return control_channel(self.control_target, self.control_token)

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/v1/pcm"

    def _log(self, name: str) -> IO[bytes] | None:
        folder = self.log_dir
        if folder is None and name in ("nats", "llama", "llama-background"):
            folder = self.deps_log_dir
        if folder is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(f)
        return f

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["VOXBUS_NATS_URL"] = self.nats_url
        env["VOXBUS_GATEWAY_PORT"] = str(self.gateway_port)
        if self.llm_base_url:
            env["VOXBUS_LLM_BASE_URL"] = self.llm_base_url
            env.setdefault("VOXBUS_LLM_MODEL", model(self.model_key).alias)
            env.setdefault("VOXBUS_LLM_TOOL_FORMAT", model(self.model_key).tool_format)
            env.setdefault("VOXBUS_LLM_PIN_SLOTS", str(self.llm_slots()))
        if self.llm_background_url:
            env["VOXBUS_LLM_BACKGROUND_BASE_URL"] = self.llm_background_url
        return env

    def _llm_server_setting(self, name: str) -> int:
        """A Settings field for the embedded llama.cpp server: the stack's env, the process
        env (VOXBUS_<NAME>), else its default."""
        var = f"VOXBUS_{name.upper()}"
        return int(self.env.get(var) or os.environ.get(var) or getattr(Settings(), name))

    def llm_slots(self) -> int:
        """Calls the embedded llama.cpp server decodes together, each with its own cache."""
        return self._llm_server_setting("llm_server_slots")

    def start(self) -> None:
        try:
            configured = [k for k in CONTROL_AUTH_VARIABLES if self.env.get(k) or os.environ.get(k)]
            if self.control_port and not configured and not self.control_token:
                self.control_token = secrets.token_urlsafe(24)
            if self.control_token:
                self.env.setdefault("VOXBUS_CONTROL_ADMIN_TOKENS", self.control_token)
            if not self.nats_url:
                self.start_nats()
            hosted = self.env.get("VOXBUS_LLM_BASE_URL") or os.environ.get(
                "OPENAI_BASE_URL") or os.environ.get("VOXBUS_LLM_BASE_URL")
            if not self.llm_base_url and not hosted:
                proc, self.llm_base_url = start_llama(
                    log=self._log("llama"), model_key=self.model_key, slots=self.llm_slots(),
                    threads=self._llm_server_setting("llm_server_threads"),
                    batch_threads=self._llm_server_setting("llm_server_batch_threads"),
                    slot_dir=self.workdir / "llama-slots")
                self.procs.append(proc)
                proc, self.llm_background_url = start_llama(
                    log=self._log("llama-background"), threads=1, model_key=self.model_key,
                    slots=1, context=4096)
                self.procs.append(proc)
            self.start_sidecars()
            for name in SERVICES:
                self.start_service(name)
        except Exception:
            self.stop()
            raise

    def start_nats(self) -> None:
        users = new_passwords() if self.secure else None
        self.credentials = {role: role_env(role, pw) for role, pw in (users or {}).items()}
        if self.nats_cluster > 1:
            self.cluster = NatsCluster(self.workdir / "nats-cluster", size=self.nats_cluster,
                                       users=users, log_dir=self.log_dir or self.deps_log_dir)
            self.cluster.start()
            self.nats_url = self.cluster.url
            if not os.environ.get("VOXBUS_NATS_REPLICAS"):
                self.env.setdefault("VOXBUS_NATS_REPLICAS", str(min(3, self.nats_cluster)))
            return
        proc, self.nats_url = start_nats(self.workdir / "nats", log=self._log("nats"),
                                         users=users, monitor_port=self.nats_monitor_port)
        self.procs.append(proc)

    def start_sidecars(self) -> None:
        """The agent file's sidecars (local stand-ins for the systems its tools call), each
        up (its ready_url answers) before any service starts."""
        path = self.env.get("VOXBUS_AGENT_FILE") or os.environ.get("VOXBUS_AGENT_FILE")
        if not path:
            return
        from voxbus_cli.sidecars import start_sidecar
        from voxbus_common.agent import load_agent

        for car in load_agent(path).sidecars:
            self.procs.append(start_sidecar(car, Path(path).resolve().parent, self.workdir,
                                            self.service_env(), self._log(car.name)))

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        env = self.service_env()
        env.update(self.credentials.get(name, {}))
        port = self.metrics_ports.setdefault(name, free_port())
        env["VOXBUS_METRICS_PORT"] = str(port)
        if name == "gateway" and self.control_port:
            env["VOXBUS_CONTROL_PORT"] = str(self.control_port)
        proc = spawn([sys.executable, "-m", f"voxbus_{name}"], env=env, log=self._log(name))
        self.procs.append(proc)
        self.service_procs[name] = proc
        return proc

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        status: dict[str, int] = {}
        while time.monotonic() < deadline:
            for name, proc in self.service_procs.items():
                if proc.poll() is not None:
                    raise EmbeddedError(f"service {name} exited with code {proc.returncode}")
            try:
                status = asyncio.run(ping_services(self.nats_url,
                                                   credentials=self.credentials.get("admin")))
            except Exception:
                status = {}
            if all(status.get(s) for s in SERVICES):
                return
        missing = [s for s in SERVICES if not status.get(s)]
        raise EmbeddedError(f"services not ready after {timeout_s:.0f} s: {', '.join(missing)}")

    @contextmanager
    def running(self, timeout_s: float = 180.0) -> Iterator[Stack]:
        """Started and ready inside the block, stopped after it (also when start fails)."""
        self.start()
        try:
            self.wait_ready(timeout_s)
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        """Services first (they hang up calls and drain while NATS is still there), then
        the LLM server and NATS."""
        services = list(self.service_procs.values())
        stop_all(services)
        stop_all([p for p in self.procs if p not in services])
        if self.cluster is not None:
            self.cluster.stop()
        self.procs.clear()
        self.service_procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
