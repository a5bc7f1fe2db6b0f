"""Memory's request/reply handlers run on faststream; the AsyncAPI faststream derives from
them agrees with the subject registry (the subject, the queue group, who consumes it)."""

from __future__ import annotations

from faststream.nats import NatsBroker, TestNatsBroker
from faststream.specification import AsyncAPI

from voxbus.v1.llm_pb2 import ContextReply, ContextRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_common import registry
from voxbus_memory.rpc import serve_rpc


class Answers:
    def __init__(self) -> None:
        self.asked: list[tuple[bytes, dict[str, str] | None]] = []

    async def answer_context(self, data: bytes, headers: dict[str, str] | None) -> bytes:
        self.asked.append((data, headers))
        return ContextReply(summary="so far").SerializeToString()

    async def answer_forget(self, data: bytes) -> bytes:
        self.asked.append((data, None))
        return b""


def test_faststreams_own_spec_of_the_handlers_matches_the_registry() -> None:
    broker = NatsBroker("nats://127.0.0.1:1")
    serve_rpc(broker, Answers(), Answers())
    spec = AsyncAPI(broker, schema_version="3.0.0").to_specification().to_jsonable()
    served = {(c["address"], c["bindings"]["nats"]["queue"]) for c in spec["channels"].values()}
    rows = {(row.pattern, "memory") for row in registry.ROWS
            if "memory" in row.consumers and row.reply is not None}
    assert served == rows


async def test_a_request_gets_the_answer_as_raw_protobuf() -> None:
    """The payload reaches the handler as it came (faststream would otherwise try JSON on a
    message without a content type) with its headers (the trace context)."""
    broker = NatsBroker("nats://127.0.0.1:1")
    answers = Answers()
    serve_rpc(broker, answers, answers)
    request = ContextRequest(meta=Meta(call_id="c1", turn_id=2)).SerializeToString()
    async with TestNatsBroker(broker) as test:
        response = await test.request(request, registry.RPC_MEMORY_CONTEXT.pattern,
                                      headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16
                                               + "-01"})
        reply = ContextReply()
        reply.ParseFromString(response.body)
    assert reply.summary == "so far"
    [(data, headers)] = answers.asked
    assert data == request and headers is not None and "traceparent" in headers
