"""`voxbus nats-config`: a nats-server configuration with one user per voxbus role (random
passwords, the permission contract of voxbus_common.nats_permissions) and the environment
each service needs to connect as its user (docs/security.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from voxbus_common.nats_permissions import (
    ROLES,
    TlsFiles,
    render_authorization,
    render_nats_config,
    render_tls,
)


def new_passwords(roles: tuple[str, ...] = ROLES) -> dict[str, str]:
    """A fresh random password per role (192 bits, URL-safe characters)."""
    return {role: secrets.token_urlsafe(24) for role in roles}


def render(users: dict[str, str], tls: TlsFiles | None, store_dir: str = "",
           auth_only: bool = False) -> str:
    """The whole server configuration, or only its tls and authorization blocks (to include
    into a configuration generated elsewhere, e.g. by the NATS Helm chart)."""
    if auth_only:
        return (render_tls(tls) if tls else "") + render_authorization(users)
    return render_nats_config(users, tls, store_dir=store_dir)


def write_secret(path: Path, text: str) -> None:
    """Write `text` readable by the owner only (it holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # also when the file existed with wider permissions


def env_lines(users: dict[str, str], tls: bool) -> str:
    """Per role, the variables its processes need (services: the pod's Secret; admin: the
    operator's shell for `voxbus forget-caller` and other CLI tools)."""
    blocks = []
    for role, password in users.items():
        blocks.append(f"# {role}\nVOXBUS_NATS_USER={role}\nVOXBUS_NATS_PASSWORD={password}\n")
    if tls:
        blocks.append("# every role, with TLS: VOXBUS_NATS_URL=tls://<host>:4222 and\n"
                      "# VOXBUS_NATS_TLS_CA=<the CA of the server certificate>\n"
                      "# (+ VOXBUS_NATS_TLS_CERT/_KEY when the server verifies clients)\n")
    return "\n".join(blocks)
