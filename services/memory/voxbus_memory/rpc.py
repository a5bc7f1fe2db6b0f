"""Memory's request/reply handlers, on faststream: a turn's context (one request per turn)
and forget-caller (an operator's action). Low rate, so faststream's cost fits
(voxbus_common/rpc_broker.py has the measurement); the event recorder stays on the Bus."""

from __future__ import annotations

from typing import Protocol

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from voxbus_common import subjects
from voxbus_common.rpc_broker import raw_body


class ContextAnswers(Protocol):
    async def answer_context(self, data: bytes, headers: dict[str, str] | None) -> bytes: ...


class ForgetAnswers(Protocol):
    async def answer_forget(self, data: bytes) -> bytes: ...


def serve_rpc(broker: NatsBroker, context: ContextAnswers, forget: ForgetAnswers) -> None:
    """Register the handlers (queue group `memory`: one replica answers each request)."""

    @broker.subscriber(subjects.RPC_MEMORY_CONTEXT, queue="memory", decoder=raw_body,
                       title="memory context", description="the conversation so far")
    async def on_context(body: bytes, message: NatsMessage) -> bytes:
        return await context.answer_context(body, message.headers)

    @broker.subscriber(subjects.RPC_MEMORY_FORGET, queue="memory", decoder=raw_body,
                       title="forget caller", description="delete a caller's memory")
    async def on_forget(body: bytes) -> bytes:
        return await forget.answer_forget(body)
