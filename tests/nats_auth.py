"""Test helpers for the NATS permission contract: a real nats-server started with a generated
configuration, clients connected as one role that record the server's permission errors,
and a throwaway CA with server and client certificates (openssl)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from voxbus_cli.embedded import free_port, nats_server_binary, spawn, stop_all, wait_for_port
from voxbus_cli.nats_config import new_passwords
from voxbus_common.config import Settings
from voxbus_common.nats_connect import connect_options
from voxbus_common.nats_permissions import TlsFiles, render_nats_config


@dataclass
class AuthServer:
    """A running nats-server with the voxbus users."""

    url: str
    users: dict[str, str]
    log_path: Path

    def settings(self, role: str, **extra: Any) -> Settings:
        return Settings().model_copy(update={
            "nats_url": self.url, "nats_user": role, "nats_password": self.users[role],
            **extra})

    def env(self, role: str) -> dict[str, str]:
        return {"VOXBUS_NATS_URL": self.url, "VOXBUS_NATS_USER": role,
                "VOXBUS_NATS_PASSWORD": self.users[role]}

    def violations(self) -> list[str]:
        """Permission violations the server logged (publish and subscription)."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "Violation" in line]


@contextmanager
def auth_server(workdir: Path, tls: TlsFiles | None = None, scheme: str = "nats"
                ) -> Iterator[AuthServer]:
    """nats-server on a free loopback port with the generated configuration."""
    workdir.mkdir(parents=True, exist_ok=True)
    users = new_passwords()
    conf = workdir / "nats.conf"
    conf.write_text(render_nats_config(users, tls, store_dir=str(workdir / "js")))
    port = free_port()
    log_path = workdir / "nats.log"
    with log_path.open("ab") as log:
        proc = spawn([nats_server_binary(), "-c", str(conf), "-a", "127.0.0.1",
                      "-p", str(port)], log=log)
    try:
        wait_for_port(port, proc, 20.0, "nats-server")
        yield AuthServer(f"{scheme}://127.0.0.1:{port}", users, log_path)
    finally:
        stop_all([proc])


@dataclass
class Probe:
    """One connection as a role; the server's -ERR permission messages land in `errors`."""

    nc: Client
    errors: list[str]
    changed: asyncio.Event

    async def refused(self, what: str, timeout_s: float = 10.0) -> str:
        """Wait (bounded, event-based) for the permissions violation naming `what`."""
        async def seen() -> str:
            while True:
                hit = next((e for e in self.errors
                            if "permissions violation" in e and what.lower() in e), None)
                if hit is not None:
                    return hit
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(seen(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"no permissions violation for {what!r}: {self.errors}") from None

    async def close(self) -> None:
        await self.nc.close()


async def probe(settings: Settings) -> Probe:
    """Connect like the services do (credentials, TLS, inbox prefix), without reconnects."""
    errors: list[str] = []
    changed = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))
        changed.set()

    nc = await nats.connect(settings.nats_url, connect_timeout=5, allow_reconnect=False,
                            max_reconnect_attempts=1, error_cb=on_error,
                            **connect_options(settings))
    return Probe(nc, errors, changed)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(folder: Path) -> Certs:
    """A self-signed CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, all signed by it (openssl; the test skips without it)."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=voxbus test CA", "-keyout", str(ca_key), "-out", str(ca))
    paths = {}
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        key, csr, cert = (folder / f"{name}-key.pem", folder / f"{name}.csr",
                          folder / f"{name}.pem")
        extfile = folder / f"{name}.ext"
        extfile.write_text(ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=voxbus {name}",
                 "-keyout", str(key), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", "2", "-extfile", str(extfile), "-out", str(cert))
        paths[name] = (cert, key)
    return Certs(ca, paths["server"][0], paths["server"][1], paths["client"][0],
                 paths["client"][1])
