"""A NATS JetStream cluster on one machine: `size` nats-server processes joined by cluster
routes, each with its own store, client port and monitoring port (`voxbus run
--nats-cluster 3`, and the cluster test fixtures). Nodes can be killed, stopped and started
again on the same ports and store, as a failure or a rolling upgrade does to them.

Routes are explicit (every node lists every other); `route_urls` lets a test send each one
through a proxy it can cut (tests/netsplit.py), with gossip pointed nowhere so that no
direct route bypasses the proxies.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from voxbus_cli.embedded import (
    EmbeddedError,
    free_port,
    nats_server_binary,
    spawn,
    stop_all,
    wait_for_port,
)
from voxbus_cli.nats_config import write_secret
from voxbus_common.nats_permissions import render_nats_config

CLUSTER_NAME = "voxbus"


def restartable_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A free port below the kernel's ephemeral range, not in `taken` (which it joins). A
    node started again must get its ports back, and while it is down an ephemeral port can
    be taken as the local end of any outgoing connection (a client reconnecting elsewhere):
    then its restart fails with "address already in use". `taken` holds the ports already
    picked for the cluster: free until their nodes start, a second pick could repeat one."""
    taken = taken if taken is not None else set()
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10000, max(10001, low))
        if port in taken:
            continue
        taken.add(port)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    return free_port()


@dataclass
class NatsNode:
    """One server of the cluster; `proc` is None while it is down."""

    name: str
    host: str
    port: int
    cluster_port: int
    monitor_port: int
    store: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def route_url(self) -> str:
        return f"nats://{self.host}:{self.cluster_port}"

    def monitor(self, path: str, timeout_s: float = 2.0) -> dict[str, Any]:
        """A monitoring endpoint's JSON (`jsz`, `healthz`, `routez`...)."""
        url = f"http://{self.host}:{self.monitor_port}/{path}"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body


@dataclass
class NatsCluster:
    data_dir: Path
    size: int = 3
    host: str = "127.0.0.1"
    users: dict[str, str] | None = None  # role -> password (voxbus nats-config)
    log_dir: Path | None = None
    # node index -> the route URLs it dials (default: every other node's cluster port)
    route_urls: Callable[[int], list[str]] | None = None
    nodes: list[NatsNode] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)
    # Nodes are started from one thread that lives as long as the cluster: a child's
    # parent-death signal (embedded.die_with_parent) follows the thread that forked it, so
    # a node started again from a short-lived worker thread was killed when that ended
    _spawner: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="nats-cluster"))

    def __post_init__(self) -> None:
        if self.size < 1:
            raise EmbeddedError("a NATS cluster needs at least one node")
        taken: set[int] = set()
        self.nodes = [NatsNode(name=f"n{i + 1}", host=self.host,
                               port=restartable_port(self.host, taken),
                               cluster_port=restartable_port(self.host, taken),
                               monitor_port=restartable_port(self.host, taken),
                               store=self.data_dir / f"n{i + 1}")
                      for i in range(self.size)]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (VOXBUS_NATS_URL)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [node.proc for node in self.nodes if node.proc is not None]

    def _args(self, index: int) -> list[str]:
        node = self.nodes[index]
        routes = (self.route_urls(index) if self.route_urls else
                  [n.route_url for n in self.nodes if n is not node])
        args = [nats_server_binary(), "-js", "-sd", str(node.store), "-n", node.name,
                "-a", self.host, "-p", str(node.port), "-m", str(node.monitor_port),
                "--cluster_name", CLUSTER_NAME, "--cluster", node.route_url,
                "--routes", ",".join(routes)]
        if self.route_urls:  # gossip would dial the real ports: point it at a closed one
            args += ["--cluster_advertise", f"{self.host}:{free_port()}", "--no_advertise"]
        if self.users:
            conf = node.store / "nats.conf"
            write_secret(conf, render_nats_config(self.users))
            args += ["-c", str(conf)]
        return args

    def start_node(self, index: int) -> None:
        """Start (or start again) one node on its ports and store."""
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            raise EmbeddedError(f"NATS node {node.name} is already running")
        node.store.mkdir(parents=True, exist_ok=True)
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"nats-{node.name}.log").open("ab")
            self._logs.append(log)
        node.proc = self._spawner.submit(spawn, self._args(index), None, log).result()
        wait_for_port(node.port, node.proc, 20.0, f"nats-server {node.name}", host=self.host)

    def start(self, timeout_s: float = 60.0) -> None:
        try:
            for index in range(self.size):
                self.start_node(index)
            self.wait_healthy(timeout_s)
        except Exception:
            self.stop()
            raise

    def kill(self, index: int) -> None:
        """SIGKILL one node: no goodbye to its routes or clients (kill -9)."""
        proc = self.nodes[index].proc
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.nodes[index].proc = None

    def stop_node(self, index: int) -> None:
        """SIGTERM one node and wait (a graceful shutdown, as in a rolling upgrade)."""
        proc = self.nodes[index].proc
        if proc is not None:
            stop_all([proc], timeout_s=30.0)
        self.nodes[index].proc = None

    def restart(self, index: int, timeout_s: float = 60.0) -> None:
        """Stop one node gracefully, start it again and wait until the cluster is healthy."""
        self.stop_node(index)
        self.start_node(index)
        self.wait_healthy(timeout_s)

    def healthy(self, index: int) -> bool:
        """The node serves JetStream and is current with its cluster (its /healthz)."""
        try:
            return self.nodes[index].monitor("healthz").get("status") == "ok"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until every running node reports healthy (a meta leader, streams caught up)."""
        deadline = time.monotonic() + timeout_s
        running = [i for i, n in enumerate(self.nodes) if n.proc is not None]
        while not all(self.healthy(i) for i in running):
            for i in running:
                proc = self.nodes[i].proc
                if proc is not None and proc.poll() is not None:
                    raise EmbeddedError(f"NATS node {self.nodes[i].name} exited "
                                        f"with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise EmbeddedError(f"the NATS cluster was not healthy within {timeout_s:.0f} s")
            time.sleep(0.1)

    def _jsz(self, query: str) -> dict[str, Any]:
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                return node.monitor(f"jsz?{query}")
            except (OSError, ValueError):
                continue
        raise EmbeddedError("no running NATS node answered /jsz")

    def meta_leader(self) -> int:
        """The index of the node that leads the JetStream meta group."""
        leader = self._jsz("leader-only=false").get("meta_cluster", {}).get("leader", "")
        return self._index(leader, "the meta group")

    def stream_leader(self, stream: str) -> int:
        """The index of the node that leads `stream`'s replica group."""
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                body = node.monitor("jsz?streams=true&accounts=true")
            except (OSError, ValueError):
                continue
            for account in body.get("account_details", []):
                for info in account.get("stream_detail", []):
                    if info.get("name") == stream and info.get("cluster", {}).get("leader"):
                        return self._index(info["cluster"]["leader"], stream)
        raise EmbeddedError(f"no leader found for stream {stream}")

    def _index(self, name: str, what: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.name == name:
                return i
        raise EmbeddedError(f"{what} has no leader now ({name!r})")

    def stop(self) -> None:
        stop_all([n.proc for n in self.nodes if n.proc is not None])
        for node in self.nodes:
            node.proc = None
        self._spawner.shutdown(wait=False)
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="nats-cluster")
        for log in self._logs:
            log.close()
        self._logs.clear()
