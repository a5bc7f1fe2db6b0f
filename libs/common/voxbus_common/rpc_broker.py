"""faststream for the bus's low-rate request/reply paths, connected like the Bus.

Measured (bench/rpc_cost.py, docs/benchmarks.md): a faststream responder costs ~2.3x the
CPU of a raw nats-py subscription per request and ~0.24 ms more per round trip. That fits
a request per turn (memory's context) or per operator action (forget-caller); it does not
fit 50 audio frames per second per call, which stay on raw nats-py (docs/decisions.md).
The broker uses the process's NATS identity: the same servers, credentials, TLS and the
role's inbox prefix (the permission contract), and reconnects forever like the Bus.
"""

from __future__ import annotations

import logging

from faststream.message import StreamMessage
from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials, NatsSecurity, NatsToken, NatsUserPassword
from faststream.security import BaseSecurity

from voxbus_common.config import CoreSettings
from voxbus_common.nats_connect import server_list, tls_context
from voxbus_common.nats_permissions import inbox_prefix


def _security(settings: CoreSettings) -> BaseSecurity | None:
    tls = tls_context(settings)
    if settings.nats_creds:
        return NatsCredentials(settings.nats_creds, ssl_context=tls)
    if settings.nats_user:
        return NatsUserPassword(settings.nats_user, settings.nats_password, ssl_context=tls)
    if settings.nats_token:
        return NatsToken(settings.nats_token, ssl_context=tls)
    return NatsSecurity(ssl_context=tls) if tls is not None else None


def rpc_broker(settings: CoreSettings, name: str) -> NatsBroker:
    """A broker for a service's request/reply handlers (not yet connected: `start()`)."""
    return NatsBroker(
        server_list(settings.nats_url), name=name, security=_security(settings),
        inbox_prefix=inbox_prefix(settings.nats_user), max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # (typed int; nats-py: seconds)
        connect_timeout=5,
        logger=logging.getLogger(f"voxbus.rpc.{name}"),
        log_level=logging.DEBUG)  # (a line per request belongs in DEBUG, not INFO)


async def raw_body(message: StreamMessage[object]) -> bytes:
    """The payload as it came: a protobuf, never guessed at as JSON (faststream's default
    decoder tries JSON when no content type is set)."""
    return bytes(message.body)
