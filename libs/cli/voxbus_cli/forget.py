"""`voxbus forget-caller`: ask the memory service to delete what it keeps about a caller."""

from __future__ import annotations

import nats

from voxbus.v1.memory_pb2 import ForgetCallerReply, ForgetCallerRequest
from voxbus_common.config import Settings
from voxbus_common.nats_connect import connect_options, redact_url, server_list
from voxbus_common.subjects import RPC_MEMORY_FORGET


class ForgetError(RuntimeError):
    """No memory service answered, or it answered with an error."""


def admin_settings(credentials: dict[str, str] | None) -> Settings:
    """The admin role: from the running stack's run.json, else this shell's VOXBUS_NATS_*."""
    settings = Settings()
    if credentials and credentials.get("VOXBUS_NATS_USER"):
        settings = settings.model_copy(update={
            "nats_user": credentials["VOXBUS_NATS_USER"],
            "nats_password": credentials.get("VOXBUS_NATS_PASSWORD", "")})
    return settings


async def forget_caller(nats_url: str, caller: str, timeout_s: float = 30.0,
                        credentials: dict[str, str] | None = None) -> ForgetCallerReply:
    """One request on vb.rpc.memory.forget; any memory replica answers."""
    async def quiet(exc: Exception) -> None:  # the failure is reported once, below
        pass

    try:  # max_reconnect_attempts=0 would retry a refused first connect forever (nats-py)
        nc = await nats.connect(server_list(nats_url), connect_timeout=5, max_reconnect_attempts=1,
                                reconnect_time_wait=0.2, allow_reconnect=False,
                                error_cb=quiet, **connect_options(admin_settings(credentials)))
    except Exception as exc:
        raise ForgetError(f"cannot reach NATS at {redact_url(nats_url)}: {exc}") from None
    try:
        msg = await nc.request(RPC_MEMORY_FORGET, ForgetCallerRequest(caller=caller)
                               .SerializeToString(), timeout=timeout_s)
    except nats.errors.NoRespondersError:
        raise ForgetError(f"no memory service is running on {redact_url(nats_url)}") from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise ForgetError(f"the memory service did not answer within {timeout_s:.0f} s") from None
    finally:
        await nc.close()
    reply = ForgetCallerReply()
    reply.ParseFromString(msg.data)
    if reply.error:
        raise ForgetError(reply.error)
    return reply
