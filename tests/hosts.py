"""Test hosts on one machine (test helper, needs root and iproute2): each host is a network
namespace with its own loopback and one address, joined to a Linux bridge in the root
namespace by a veth pair, as machines on one switch. The root namespace has an address on
the bridge too, so servers run there (NATS) and the test process reach every host.

`run()` starts a process inside a host; `cut()` takes the host's link down at the switch
(its packets are dropped, established TCP connections stall, as in a real partition);
`heal()` brings it back. Everything made (namespaces, veths, bridge, processes) is removed
when the `bridged_hosts()` block ends, also when a test fails. Names carry a random suffix
(interface and namespace names are machine-global); leftovers of a run that was killed
outright (the namespaces and bridge of a process that no longer exists) are swept first.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from voxbus_cli.embedded import spawn, stop_all

PREFIX = "vbh"  # namespaces: vbh<pid>-<suffix>-<host>; the bridge's alias: "vbh <pid>"


class HostError(RuntimeError):
    """An `ip` command failed while making or changing the test network."""


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise HostError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def require_root_and_ip() -> None:
    """Skip the calling test (with the reason) where test hosts cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("test hosts need root (network namespaces, veth, a bridge)")
    if shutil.which("ip") is None:
        pytest.skip("test hosts need iproute2 (`ip` not found)")


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sweep_leftovers() -> None:
    """Remove the namespaces and bridges of earlier runs whose process is gone."""
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split(" ")[0]
        found = re.fullmatch(rf"{PREFIX}(\d+)-.*", name)
        if found and not _alive(int(found.group(1))):
            ip("netns", "del", name, check=False)
    for link in json.loads(ip("-j", "link", "show", "type", "bridge", check=False) or "[]"):
        owner = re.fullmatch(rf"{PREFIX} (\d+)", link.get("ifalias", ""))
        if owner and not _alive(int(owner.group(1))):
            ip("link", "del", link["ifname"], check=False)


def free_subnet() -> ipaddress.IPv4Network:
    """A random /24 in 10.0.0.0/8 that no address or route on this machine overlaps."""
    taken = [ipaddress.ip_network(word, strict=False)
             for word in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?\b",
                                    ip("-4", "addr") + ip("-4", "route", "show", "table", "all"))]
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{random.randint(64, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(other) for other in taken):
            return net
    raise HostError("no free 10.x.y.0/24 subnet for the test hosts")


@dataclass
class Host:
    name: str
    netns: str
    address: str
    link: str  # the veth end on the bridge (root namespace)


@dataclass
class HostNetwork:
    """The bridge, its hosts, and the processes started in them."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: ipaddress.IPv4Network = field(default_factory=free_subnet)
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    bridge: str = ""

    @property
    def address(self) -> str:
        """The root namespace's address on the bridge (where the test and NATS run)."""
        return str(self.subnet.network_address + 1)

    def _prefixed(self, address: str) -> str:
        return f"{address}/{self.subnet.prefixlen}"

    def make_bridge(self) -> None:
        self.bridge = f"{PREFIX}br{self.suffix}"
        ip("link", "add", self.bridge, "type", "bridge")
        ip("link", "set", self.bridge, "alias", f"{PREFIX} {os.getpid()}")
        ip("addr", "add", self._prefixed(self.address), "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> Host:
        """A new host on the bridge, with loopback up and the next free address."""
        index = len(self.hosts) + 2
        host = Host(name=name, netns=f"{PREFIX}{os.getpid()}-{self.suffix}-{name}",
                    address=str(self.subnet.network_address + index),
                    link=f"{PREFIX}{self.suffix}h{index}")
        ip("netns", "add", host.netns)
        self.hosts[name] = host  # (removed at teardown from here on)
        ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0",
           "netns", host.netns)
        ip("link", "set", host.link, "master", self.bridge)
        ip("link", "set", host.link, "up")
        inside = ("netns", "exec", host.netns, "ip")
        ip(*inside, "link", "set", "lo", "up")
        ip(*inside, "addr", "add", self._prefixed(host.address), "dev", "eth0")
        ip(*inside, "link", "set", "eth0", "up")
        return host

    def run(self, host: str, args: list[str], env: dict[str, str] | None = None,
            log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start `args` inside `host` (it dies with the test process); output to `log`."""
        out = log.open("ab") if log is not None else None
        try:
            proc = spawn(["ip", "netns", "exec", self.hosts[host].netns, *args], env=env, log=out)
        finally:
            if out is not None:
                out.close()  # (the child has its own copy)
        self.procs.append(proc)
        return proc

    def cut(self, host: str) -> None:
        """Unplug `host` at the switch: nothing gets in or out, connections stay open."""
        ip("link", "set", self.hosts[host].link, "down")

    def heal(self, host: str) -> None:
        ip("link", "set", self.hosts[host].link, "up")

    def teardown(self) -> None:
        """Kill every process started here, then remove hosts (their veths go with them)
        and the bridge; goes on past errors so that nothing is left behind."""
        stop_all(self.procs)
        self.procs.clear()
        for host in self.hosts.values():
            ip("netns", "del", host.netns, check=False)
        self.hosts.clear()
        if self.bridge:
            ip("link", "del", self.bridge, check=False)
            self.bridge = ""


@contextmanager
def bridged_hosts(*names: str) -> Iterator[HostNetwork]:
    """Hosts `names` on a fresh bridge (skips the test where this cannot run)."""
    require_root_and_ip()
    sweep_leftovers()
    hosts = HostNetwork()
    try:
        hosts.make_bridge()
        for name in names:
            hosts.add(name)
        yield hosts
    finally:
        hosts.teardown()

