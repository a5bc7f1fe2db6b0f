"""The NATS permission contract: what each service may publish and subscribe, derived from the
subject registry (registry.py), and a nats-server configuration that enforces it.

One NATS user per role (gateway, stt, llm, tts, memory, and `admin` for the CLI and operators);
the user name is the role. Besides its data subjects, a role gets exactly the JetStream API
subjects its code path uses:

- work queues (durable pull consumers): consumer info/create of its own durable on its own
  stream, `$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>` and `$JS.ACK.<stream>.<durable>.>`;
- ordered consumers (stt reading a call's audio, the gateway watching STT heartbeats): an
  ephemeral consumer on that one stream and its flow-control replies (`$JS.FC.<stream>.>`);
- KV buckets: `$KV.<bucket>.>` to write, `STREAM.MSG.GET` / `DIRECT.GET` to read;
- replies: each role has its own inbox prefix (`_INBOX_<role>`, set by the client), so no
  service can read another one's replies (KV reads, RPC answers); answering a request it was
  sent is allowed once per request (`allow_responses`), never publishing into other inboxes.

Streams: every service may *create* every stream of the contract (a fresh server is set up
by whichever service starts first, in any order; creating an existing stream never changes
it). Only the stream managers (memory and admin) may *update* streams: a worker cannot
reconfigure a stream to capture subjects it may not read, or cut the retention of others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from voxbus_common import subjects
from voxbus_common.registry import ROWS, stream_specs, subscribes
from voxbus_common.registry import subject_matches as subject_matches  # (re-exported)

SERVICES = ("gateway", "stt", "llm", "tts", "memory")
ADMIN = "admin"
ROLES = (*SERVICES, ADMIN)
STREAM_MANAGERS = frozenset({"memory", ADMIN})  # may update stream configurations

API = "$JS.API"
STREAMS = tuple(spec.name for spec in stream_specs(30.0, 3600.0))
_ANY = "ANYCALL"  # a valid call id, replaced by the `*` wildcard


def any_call(subject_of: Callable[[str], str]) -> str:
    """A per-call subject of subjects.py with the call id token as a wildcard."""
    return ".".join("*" if t == _ANY else t for t in subject_of(_ANY).split("."))


OUT_ALL = any_call(subjects.call_out_all)


@dataclass(frozen=True)
class Permissions:
    """One NATS user's allow lists (everything else is denied)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool  # may answer each request it received, once


def inbox_prefix(user: str) -> str:
    """The reply-subject prefix of a role's connections (`_INBOX` without a user)."""
    return f"_INBOX_{user}" if user else "_INBOX"


def may_update_streams(user: str) -> bool:
    """Whether a connection as `user` may update stream configurations: denied only for the
    service roles of this contract that are not stream managers (no user, or a user of
    another auth setup: as before, the service applies its stream contract)."""
    return user not in SERVICES or user in STREAM_MANAGERS


# -- JetStream building blocks --------------------------------------------------------------

def _streams_create() -> list[str]:
    return [f"{API}.STREAM.CREATE.{name}" for name in STREAMS]


def _streams_update() -> list[str]:
    return [f"{API}.STREAM.UPDATE.{name}" for name in STREAMS]


def _pull(stream: str, durable: str, filter_subject: str) -> list[str]:
    """A durable pull consumer (Bus.run_pull_worker) and its acks."""
    _check_stream(stream)
    return [f"{API}.CONSUMER.INFO.{stream}.{durable}",
            f"{API}.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
            f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>"]


def _ordered(stream: str) -> list[str]:
    """Ordered (ephemeral push) consumers on one stream: created by stream name, so the
    filter subject travels in the request body and is not restricted here."""
    return [f"{API}.CONSUMER.CREATE.{stream}", f"{API}.CONSUMER.INFO.{stream}.*",
            f"$JS.FC.{stream}.>"]


def _kv_read(bucket: str) -> list[str]:
    stream = f"KV_{bucket}"
    return [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.CREATE.{stream}",
            f"{API}.STREAM.MSG.GET.{stream}", f"{API}.DIRECT.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}.>"]


def _kv_write(bucket: str) -> list[str]:
    return [*_kv_read(bucket), f"$KV.{bucket}.>"]


def _kv_watch(bucket: str) -> list[str]:
    return _ordered(f"KV_{bucket}")


def _check_stream(name: str) -> None:
    if name not in STREAMS:
        raise ValueError(f"{name} is not a stream of the contract ({', '.join(STREAMS)})")


def _service(role: str, publish: Iterable[str], subscribe: Iterable[str]) -> Permissions:
    """Every service answers pings and may create the contract's streams (bootstrap)."""
    pub = [*publish, *_streams_create()]
    if role in STREAM_MANAGERS:
        pub += _streams_update()
    sub = [*subscribe, subjects.RPC_PING, f"{inbox_prefix(role)}.>"]
    return Permissions(tuple(dict.fromkeys(pub)), tuple(dict.fromkeys(sub)), True)


def _data(role: str) -> tuple[list[str], list[str]]:
    """A role's publish and subscribe grants on data subjects: its rows of the registry.
    A role that subscribes to every row under `vb.call.*.out.>` gets that one wildcard
    instead (the gateway subscribes once per call)."""
    publish = [row.wildcard for row in ROWS if role in row.publishers]
    subscribe = [row.wildcard for row in ROWS if subscribes(row, role)]
    under = [w for w in subscribe if subject_matches(OUT_ALL, w)]
    if under and len(under) == sum(subject_matches(OUT_ALL, row.wildcard) for row in ROWS):
        subscribe = [OUT_ALL, *(w for w in subscribe if w not in under)]
    return publish, subscribe


def _consumers(role: str) -> list[str]:
    """The JetStream API of a role's consumers, from the registry: its durable pull
    consumers and the streams it reads with ordered consumers."""
    out: list[str] = []
    for row in ROWS:
        if row.pull is not None and row.pull[0] == role:
            out += _pull(row.stream, row.pull[1], row.wildcard)
        if role in row.ordered:
            out += _ordered(row.stream)
    return out


# what the registry's rows do not say: buckets and the odd API call, per service
_EXTRA_PUBLISH: dict[str, list[str]] = {
    "gateway": [*_kv_read(subjects.SESSIONS_BUCKET), *_kv_read(subjects.STT_BUCKET),
                *_kv_watch(subjects.STT_BUCKET), *_kv_write(subjects.CALLS_BUCKET),
                *_kv_watch(subjects.CALLS_BUCKET),
                f"{API}.INFO"],  # the quorum probe (voxbus_gateway/quorum.py)
    "stt": [f"{API}.STREAM.NAMES", *_kv_write(subjects.STT_BUCKET)],
    "llm": [],
    "tts": [],
    "memory": [*_kv_write(subjects.SESSIONS_BUCKET), *_kv_write(subjects.CALLERS_BUCKET)],
}


def _contract() -> dict[str, Permissions]:
    contract = {}
    for role in SERVICES:
        publish, subscribe = _data(role)
        contract[role] = _service(role, [*publish, *_consumers(role), *_EXTRA_PUBLISH[role]],
                                  subscribe)
    # operators and the CLI (forget-caller, pings, stream and consumer inspection): the
    # whole JetStream API, requests to the services, live call events; no other data subject
    publish, subscribe = _data(ADMIN)
    contract[ADMIN] = Permissions(
        publish=(*publish, f"{API}.>", "$JS.ACK.>", "$JS.FC.>"),
        subscribe=(*subscribe, f"{inbox_prefix(ADMIN)}.>"),
        allow_responses=False)
    return contract


CONTRACT: dict[str, Permissions] = _contract()


def permissions(role: str) -> Permissions:
    try:
        return CONTRACT[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}") from None


# -- matching (NATS wildcard rules) ----------------------------------------------------------

def may_publish(role: str, subject: str) -> bool:
    return any(subject_matches(p, subject) for p in permissions(role).publish)


def may_subscribe(role: str, subject: str) -> bool:
    return any(subject_matches(p, subject) for p in permissions(role).subscribe)


# -- nats-server configuration -------------------------------------------------------------

@dataclass(frozen=True)
class TlsFiles:
    """Server TLS: its certificate and key; `ca_file` + `verify` require client certificates
    signed by that CA (mutual TLS)."""

    cert_file: str
    key_file: str
    ca_file: str = ""
    verify: bool = False


def _q(value: str) -> str:
    return json.dumps(value)  # quoted: `$` starts a variable in unquoted NATS config values


def _list(items: Iterable[str], indent: str) -> str:
    inner = "".join(f"{indent}  {_q(i)}\n" for i in items)
    return f"[\n{inner}{indent}]"


def render_authorization(users: Mapping[str, str]) -> str:
    """The `authorization` block: one user per role with its password and permissions."""
    entries = []
    for role, password in users.items():
        perms = permissions(role)
        ind = " " * 8
        entries.append(
            "    {\n"
            f"      user: {_q(role)}\n"
            f"      password: {_q(password)}\n"
            "      permissions {\n"
            f"        publish {{ allow: {_list(perms.publish, ind)} }}\n"
            f"        subscribe {{ allow: {_list(perms.subscribe, ind)} }}\n"
            f"        allow_responses: {'true' if perms.allow_responses else 'false'}\n"
            "      }\n"
            "    }\n")
    return "authorization {\n  users = [\n" + "".join(entries) + "  ]\n}\n"


def render_tls(tls: TlsFiles) -> str:
    lines = [f"  cert_file: {_q(tls.cert_file)}", f"  key_file: {_q(tls.key_file)}"]
    if tls.ca_file:
        lines.append(f"  ca_file: {_q(tls.ca_file)}")
    lines.append(f"  verify: {'true' if tls.verify else 'false'}")
    return "tls {\n" + "\n".join(lines) + "\n}\n"


def render_nats_config(users: Mapping[str, str], tls: TlsFiles | None = None, *,
                       listen: str = "", store_dir: str = "") -> str:
    """A complete nats-server configuration: JetStream on, the users of the contract with
    their permissions, TLS when given. Passwords are in clear: keep the file secret."""
    for role in users:
        permissions(role)  # unknown roles fail before anything is written
    parts = ["# voxbus NATS configuration (`voxbus nats-config`, docs/security.md).\n"
             "# It holds passwords: keep it secret (mode 0600, a Kubernetes Secret).\n"]
    if listen:
        parts.append(f"listen: {_q(listen)}\n")
    parts.append(f"jetstream {{\n  store_dir: {_q(store_dir)}\n}}\n" if store_dir
                 else "jetstream: enabled\n")
    if tls is not None:
        parts.append(render_tls(tls))
    parts.append(render_authorization(users))
    return "\n".join(parts)
