"""How a voxbus process authenticates to NATS: credentials, TLS and its inbox prefix, from the
settings (docs/security.md). Nothing here is ever logged; `redact_url` strips credentials
from a URL before it is printed."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from voxbus_common.config import CoreSettings
from voxbus_common.nats_permissions import inbox_prefix


def tls_context(settings: CoreSettings) -> ssl.SSLContext | None:
    """A client TLS context when a CA, a client certificate or a tls:// URL is configured:
    the server is verified against the CA (else the system's), the certificate and key
    authenticate this client to a server that asks for one."""
    url = settings.nats_url.strip().lower()
    if not (settings.nats_tls_ca or settings.nats_tls_cert or url.startswith("tls://")):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=settings.nats_tls_ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.nats_tls_cert:
        context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key or None)
    return context


def server_list(url: str) -> list[str]:
    """The servers of a NATS URL that may list several (`nats://a:4222,nats://b:4222`, as in
    the Go client): nats-py takes a list, not a comma-separated string."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("no NATS server in the URL")
    return servers


def connect_options(settings: CoreSettings) -> dict[str, Any]:
    """Keyword arguments for nats.connect: credentials, TLS and the role's inbox prefix
    (the permission contract lets each role subscribe to its own inboxes only)."""
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(settings.nats_user)}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_token:
        options["token"] = settings.nats_token
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    return options


def redact_url(url: str) -> str:
    """The NATS URL(s) without user info (`nats://user:pass@host` -> `nats://host`)."""
    out = []
    for part in url.split(","):
        part = part.strip()
        try:
            split = urlsplit(part)
        except ValueError:
            out.append("<unparseable url>")
            continue
        if "@" in split.netloc:
            split = split._replace(netloc=split.netloc.rsplit("@", 1)[1])
        out.append(urlunsplit(split))
    return ",".join(out)
