"""`voxbus calls list|show|watch|end|say|inject|transfer|mute|unmute`: the gRPC control API
from a shell. Target and token: --control / VOXBUS_CONTROL (default: the stack `voxbus run`
started) and --token / VOXBUS_CONTROL_TOKEN (default: the admin token it made)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import typer
from google.protobuf.json_format import MessageToDict

from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus_cli.state import find_running

if TYPE_CHECKING:  # (the async stub exists in the typing stubs only)
    from voxbus.v1.control_pb2_grpc import ControlAsyncStub

calls_app = typer.Typer(no_args_is_help=True, help="Steer live calls (gRPC control API).")
T = TypeVar("T")
DEFAULT_TARGET = "127.0.0.1:50051"


def _target(explicit: str) -> str:
    return explicit or os.environ.get("VOXBUS_CONTROL", "") or str(
        find_running().get("control") or DEFAULT_TARGET)


def _token(explicit_target: str, token: str) -> str:
    """The given token, else (for the running stack) the admin token `voxbus run` made."""
    if token or explicit_target or os.environ.get("VOXBUS_CONTROL"):
        return token
    return str(find_running().get("control_token") or "")


def _run(target: str, token: str, rpc: Callable[[ControlAsyncStub, Any], Awaitable[T]]) -> T:
    """One RPC; gRPC errors become one line on stderr and exit code 2."""
    token = _token(target, token)
    metadata = (("authorization", f"Bearer {token}"),) if token else None

    async def go() -> T:
        async with grpc.aio.insecure_channel(_target(target)) as channel:
            return await rpc(ControlStub(channel), metadata)  # an aio channel: async stub

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as exc:
        typer.echo(f"error: {exc.code().name}: {exc.details()}", err=True)
        raise typer.Exit(2) from None


Target = typer.Option("", "--control", help="control API host:port (default: the running stack)")
Token = typer.Option("", "--token", envvar="VOXBUS_CONTROL_TOKEN", help="bearer token")


def _show(message: Any) -> None:
    typer.echo(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


@calls_app.command("list")
def list_calls(agent: str = typer.Option("", help="only this agent's calls"),
               target: str = Target, token: str = Token) -> None:
    """Live calls on every gateway."""
    reply = _run(target, token, lambda s, m: s.ListCalls(pb.ListCallsRequest(agent=agent),
                                                          metadata=m))
    if not reply.calls:
        typer.echo("no live calls")
    for c in reply.calls:
        typer.echo(f"{c.call_id:<36} {pb.CallState.Name(c.state)[11:]:<7} {c.edge:<8} "
                   f"turns={c.turns:<3} {'muted ' if c.muted else ''}{c.agent}")


@calls_app.command("show")
def show(call_id: str, target: str = Target, token: str = Token) -> None:
    """A call's state, transcript so far and per-turn latencies (live or ended)."""
    _show(_run(target, token, lambda s, m: s.GetCall(pb.GetCallRequest(call_id=call_id),
                                                      metadata=m)))


@calls_app.command("watch")
def watch(call_id: str = typer.Argument("", help="one call (default: every call)"),
          target: str = Target, token: str = Token) -> None:
    """Print live events (one JSON object per line) until the call ends or Ctrl-C."""

    async def stream(stub: ControlAsyncStub, metadata: Any) -> None:
        updates = (stub.WatchCall(pb.WatchCallRequest(call_id=call_id), metadata=metadata)
                   if call_id else stub.WatchCalls(pb.WatchCallsRequest(), metadata=metadata))
        async for update in updates:
            typer.echo(json.dumps({"call_id": update.call_id, "type": update.type,
                                   **MessageToDict(update.data)}))

    with contextlib.suppress(KeyboardInterrupt):
        _run(target, token, stream)


@calls_app.command("end")
def end(call_id: str, reason: str = typer.Option("", help="recorded as the end reason"),
        target: str = Target, token: str = Token) -> None:
    """Hang up a call."""
    _show(_run(target, token, lambda s, m: s.EndCall(
        pb.EndCallRequest(call_id=call_id, reason=reason), metadata=m)))


@calls_app.command("say")
def say(call_id: str, text: str,
        interrupt: bool = typer.Option(False, help="cut the agent off if it is speaking"),
        target: str = Target, token: str = Token) -> None:
    """The agent says TEXT now."""
    _show(_run(target, token, lambda s, m: s.Say(
        pb.SayRequest(call_id=call_id, text=text, interrupt=interrupt), metadata=m)))


@calls_app.command("inject")
def inject(call_id: str, text: str, target: str = Target, token: str = Token) -> None:
    """Add a system message the model sees from the next turn."""
    _show(_run(target, token, lambda s, m: s.Inject(
        pb.InjectRequest(call_id=call_id, text=text), metadata=m)))


@calls_app.command("transfer")
def transfer(call_id: str, to: str, target: str = Target, token: str = Token) -> None:
    """Hand the caller to a number or sip: URI."""
    _show(_run(target, token, lambda s, m: s.Transfer(
        pb.TransferRequest(call_id=call_id, target=to), metadata=m)))


@calls_app.command("mute")
def mute(call_id: str, target: str = Target, token: str = Token) -> None:
    """The agent listens but does not answer."""
    _show(_run(target, token, lambda s, m: s.Mute(pb.MuteRequest(call_id=call_id),
                                                   metadata=m)))


@calls_app.command("unmute")
def unmute(call_id: str, target: str = Target, token: str = Token) -> None:
    """The agent answers again."""
    _show(_run(target, token, lambda s, m: s.Unmute(pb.MuteRequest(call_id=call_id),
                                                     metadata=m)))
