"""The running services keep the subject registry's contract (voxbus_common/registry.py):
read from the nats-server's own monitoring endpoints during a live call, every subscription
a service holds is a row addressed to it, every row a role consumes is subscribed by that
role (core, pull or ordered consumer, as the row says), and every pull consumer is the
row's durable. A new row without its consumer, or a subscription without a row, fails."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SPEECH, running_instant_stack
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common import registry as r
from voxbus_common.ids import kv_token
from voxbus_common.registry import ROWS, Row, subject_matches, subscribes
from voxbus_testkit.live_call import LiveCall

SERVICES = (r.GATEWAY, r.STT, r.LLM, r.TTS, r.MEMORY)
# Rows a role subscribes to only on demand, never in a plain call: why, for each.
ON_DEMAND = {
    (r.WATCH.name, r.GATEWAY): "only while a control API client watches the call",
}


def monitor(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=10) as reply:
        return json.loads(reply.read())


def role_subscriptions(port: int) -> dict[str, set[str]]:
    """Each service's core subscriptions (call ids as `*`, and the replica's own name: its
    take-over door), infrastructure left out: inboxes (`_...`) and the JetStream/KV API
    (`$...`)."""
    subs: dict[str, set[str]] = {role: set() for role in SERVICES}
    for conn in monitor(port, "connz?subs=detail&limit=1024")["connections"]:
        role = str(conn.get("name", "")).split("-")[0]
        if role not in subs:
            continue
        for sub in conn.get("subscriptions_list_detail") or ():
            subject = str(sub["subject"])
            if not subject.startswith(("_", "$")):
                subs[role].add(normalized(subject, kv_token(str(conn.get("name", "")))))
    return subs


def normalized(subject: str, call_id: str) -> str:
    return ".".join("*" if token == call_id else token for token in subject.split("."))


def consumers(port: int) -> list[tuple[str, str, list[str]]]:
    """(stream, durable name or "", filter subjects) of every JetStream consumer."""
    found = []
    for account in monitor(port, "jsz?consumers=true&config=true")["account_details"]:
        for stream in account.get("stream_detail") or ():
            for consumer in stream.get("consumer_detail") or ():
                config = consumer.get("config") or {}
                filters = config.get("filter_subjects") or (
                    [config["filter_subject"]] if config.get("filter_subject") else [])
                found.append((stream["name"], config.get("durable_name", ""), filters))
    return found


def covers(subscription: str, row: Row[Any]) -> bool:
    return subject_matches(subscription, row.wildcard)


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[tuple[Stack, int]]:
    """The instant stack with nats-server's monitoring endpoints on a free port; a greeting,
    so the gateway sends fixed text to TTS too (its take watch on that pool)."""
    port = free_port()
    with running_instant_stack(tmp_path, nats_monitor_port=port,
                               VOXBUS_GREETING="Hello, how can I help?") as stack:
        yield stack, port


async def test_services_subscribe_to_exactly_the_rows_addressed_to_them(
        monitored: tuple[Stack, int]) -> None:
    stack, port = monitored
    pcm = load_wav(SPEECH / "ls_dev_2412-153948-0000.wav")
    async with LiveCall(stack.gateway_url) as call:
        call.speak(pcm)
        # the caller's turn (not the greeting's): the LLM answered it through TTS
        await call.wait_for(lambda e: e["type"] == "turn" and bool(e.get("user_text")))
        subs = {role: {normalized(s, call.call_id) for s in held}
                for role, held in role_subscriptions(port).items()}
        pulls = consumers(port)

    problems: list[str] = []
    for role, held in subs.items():
        for subscription in sorted(held):
            rows = [row for row in ROWS if covers(subscription, row)]
            if not rows:
                problems.append(f"{role} subscribes to {subscription}: no registry row")
            problems += [f"{role} subscribes to {subscription}, which covers {row.name} "
                         f"(consumers: {', '.join(row.consumers)})"
                         for row in rows if role not in row.consumers]
    for row in ROWS:
        for role in row.consumers:
            if role not in SERVICES or (row.name, role) in ON_DEMAND:
                continue
            if (row.pull is not None and row.pull[0] == role) or role in row.ordered:
                continue  # its JetStream consumer, checked below (a core sub only at times)
            if subscribes(row, role) and not any(covers(s, row) for s in subs[role]):
                problems.append(f"{role} does not subscribe to {row.name} ({row.pattern})")
        if row.pull is not None and not any(
                stream == row.stream and durable == row.pull[1]
                and (not filters or any(covers(f, row) for f in filters))
                for stream, durable, filters in pulls):
            problems.append(f"no durable {row.pull[1]} on {row.stream} for {row.name}")
        if row.ordered and not any(stream == row.stream and not durable and filters
                                   and all(subject_matches(row.wildcard, f) for f in filters)
                                   for stream, durable, filters in pulls):
            problems.append(f"no ordered consumer of {row.name} on {row.stream}")
    assert problems == []
