"""The five real services, each connected as its own NATS user with the permission contract
(`voxbus nats-config`; `voxbus run` starts them so), answer a call end to end and store it,
and the server refuses nothing they do: the contract is complete for the services' real code
paths (streams, work queues, acks, ordered consumers, KV watches, request/reply, pings).
Instant models."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import nats
import pytest

from tests.integration.conftest import watch_session
from tests.nats_auth import probe
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.config import Settings
from voxbus_common.subjects import SESSIONS_BUCKET
from voxbus_testkit.instant import HEARD, instant_env
from voxbus_testkit.live_call import LiveCall

if TYPE_CHECKING:  # (the async stub exists in the typing stubs only)
    from voxbus.v1.control_pb2_grpc import ControlAsyncStub

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack closed as `voxbus run` starts it: the embedded NATS serves one user per role,
    each service connects as its own, the control API wants the stack's token."""
    workdir = tmp_path_factory.mktemp("secured")
    stack = Stack(workdir=workdir, gateway_port=free_port(), control_port=free_port(),
                  log_dir=workdir / "logs", env={**instant_env(), "PYTHONPATH": str(ROOT)},
                  secure=True)
    with stack.running(timeout_s=120):
        yield stack


def settings_of(stack: Stack, role: str) -> Settings:
    creds = stack.credentials[role]
    return Settings().model_copy(update={"nats_url": stack.nats_url,
                                         "nats_user": creds["VOXBUS_NATS_USER"],
                                         "nats_password": creds["VOXBUS_NATS_PASSWORD"]})


def violations(stack: Stack) -> list[str]:
    assert stack.log_dir is not None
    text = (stack.log_dir / "nats.log").read_text(errors="replace")
    return [line for line in text.splitlines() if "Violation" in line]


async def test_a_call_is_answered_with_per_service_credentials(secured: Stack) -> None:
    stack = secured
    clip = load_wav(ROOT / "speech" / "arctic_aew_a0001.wav")
    async with stack.control_channel() as channel:
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

    admin = await probe(settings_of(stack, "admin"))  # memory stored the call, as its user
    try:
        kv = await admin.nc.jetstream().key_value(SESSIONS_BUCKET)
        session = await watch_session(kv, call_id, lambda s: bool(s.ended_unix_ns))
    finally:
        await admin.close()
    async with stack.control_channel() as channel:  # from memory now
        control = ControlStub(channel)
        ended = await control.GetCall(pb.GetCallRequest(call_id=call_id))
        assert ended.summary.call_id == call_id
    assert [t.role for t in session.turns][:2] == ["user", "assistant"]
    assert all(p.poll() is None for p in stack.service_procs.values())
    assert violations(stack) == []
    for name in ("gateway", "stt", "llm", "tts", "memory"):
        assert stack.log_dir is not None
        log = (stack.log_dir / f"{name}.log").read_text(errors="replace")
        assert "permissions violation" not in log.lower(), f"{name}: {log[-2000:]}"
        password = stack.credentials[name]["VOXBUS_NATS_PASSWORD"]
        assert password not in log  # its password is never printed


async def test_without_credentials_nothing_is_readable(secured: Stack) -> None:
    """Closed by default: a local process without credentials can neither connect to the
    bus (so not subscribe to vb.>) nor call the control API; the server's configuration,
    which holds the passwords, is owner-only."""
    stack = secured
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(stack.nats_url, connect_timeout=5, allow_reconnect=False,
                           max_reconnect_attempts=1)
    tts = await probe(settings_of(stack, "tts"))  # a worker's user cannot read caller audio
    try:
        await tts.nc.subscribe("vb.>")
        assert "vb.>" in await tts.refused("vb.>")
    finally:
        await tts.close()
    async with grpc.aio.insecure_channel(stack.control_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ControlStub(channel).ListCalls(pb.ListCallsRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    conf = stack.workdir / "nats" / "nats.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
