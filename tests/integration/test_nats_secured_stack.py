"""The five real services, each connected as its own NATS user with the permission contract
(`voxbus nats-config`), answer a call end to end and store it, and the server refuses
nothing they do: the contract is complete for the services' real code paths (streams, work
queues, acks, ordered consumers, KV watches, request/reply, pings). Instant models."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.instant import HEARD, instant_env
from tests.integration.conftest import watch_kv
from tests.live_call import LiveCall
from tests.nats_auth import AuthServer, auth_server, probe
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus.v1.memory_pb2 import Session
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.subjects import SESSIONS_BUCKET

if TYPE_CHECKING:  # (the async stub exists in the typing stubs only)
    from voxbus.v1.control_pb2_grpc import ControlAsyncStub

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CredentialedStack(Stack):
    """A Stack whose services each get their own NATS user (the env of their role)."""

    credentials: dict[str, dict[str, str]] = field(default_factory=dict)

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        shared = self.env
        self.env = {**shared, **self.credentials[name]}
        try:
            return super().start_service(name)
        finally:
            self.env = shared


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, AuthServer]]:
    workdir = tmp_path_factory.mktemp("secured")
    with auth_server(workdir / "nats") as server, pytest.MonkeyPatch.context() as env:
        for key, value in server.env("admin").items():  # the stack's pings go as admin
            env.setenv(key, value)
        stack = CredentialedStack(
            workdir=workdir, gateway_port=free_port(), nats_url=server.url,
            control_port=free_port(),
            log_dir=workdir / "logs", env={**instant_env(), "PYTHONPATH": str(ROOT)},
            credentials={role: server.env(role)
                         for role in ("gateway", "stt", "llm", "tts", "memory")})
        with stack.running(timeout_s=120):
            yield stack, server


async def test_a_call_is_answered_with_per_service_credentials(
        secured: tuple[Stack, AuthServer]) -> None:
    stack, server = secured
    clip = load_wav(ROOT / "speech" / "arctic_aew_a0001.wav")
    async with grpc.aio.insecure_channel(stack.control_target) as channel:
        control: ControlAsyncStub = ControlStub(channel)
        async with LiveCall(stack.gateway_url) as call:
            call.speak(clip)
            turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
            assert turn["user_text"] == HEARD and turn["agent_text"]
            call_id = call.call_id
            # the control API: every gateway's calls (scatter-gather), the owner's answer
            listed = (await control.ListCalls(pb.ListCallsRequest())).calls
            assert call_id in [c.call_id for c in listed]
            live = await control.GetCall(pb.GetCallRequest(call_id=call_id))
            assert live.summary.call_id == call_id

    admin = await probe(server.settings("admin"))  # memory stored the call, as its user
    try:
        kv = await admin.nc.jetstream().key_value(SESSIONS_BUCKET)
        session = await watch_kv(kv, call_id, Session, lambda s: bool(s.ended_unix_ns))
    finally:
        await admin.close()
    async with grpc.aio.insecure_channel(stack.control_target) as channel:  # from memory now
        control = ControlStub(channel)
        ended = await control.GetCall(pb.GetCallRequest(call_id=call_id))
        assert ended.summary.call_id == call_id
    assert [t.role for t in session.turns][:2] == ["user", "assistant"]
    assert all(p.poll() is None for p in stack.service_procs.values())
    assert server.violations() == []
    for name in ("gateway", "stt", "llm", "tts", "memory"):
        assert stack.log_dir is not None
        log = (stack.log_dir / f"{name}.log").read_text(errors="replace")
        assert "permissions violation" not in log.lower(), f"{name}: {log[-2000:]}"
        assert server.users[name] not in log  # its password is never printed
