"""Starting the control API: the Control service, standard health checking (for Kubernetes
gRPC probes, no token needed) and reflection (grpcurl), on VOXBUS_CONTROL_PORT."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from voxbus.v1 import control_pb2
from voxbus.v1.control_pb2_grpc import add_ControlServicer_to_server
from voxbus_common.bus import Bus
from voxbus_common.config import GatewayService
from voxbus_gateway.control.service import MAX_REQUEST_BYTES, Context, ControlService

log = logging.getLogger(__name__)

SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


async def _parsed(parse: Callable[[bytes], Any], raw: bytes, context: Context) -> Any:
    try:
        return parse(raw)
    except DecodeError:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            "the request is not a valid protobuf message (bad UTF-8 in a string?)")


class ParseInHandler(grpc.aio.ServerInterceptor):
    """Control requests are parsed in the handler: one that does not parse (bad UTF-8 in a
    string field, truncated bytes) is INVALID_ARGUMENT, not UNKNOWN with a logged traceback."""

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if (handler is None or handler.request_deserializer is None
                or not details.method.startswith(f"/{SERVICE}/")):
            return handler
        parse, serialize = handler.request_deserializer, handler.response_serializer
        # (the stubs type the behaviours as sync; on grpc.aio they are coroutines / async gens)
        unary: Any = handler.unary_unary
        stream: Any = handler.unary_stream
        if unary is not None:
            async def unary_parsed(raw: bytes, context: Context) -> Any:
                return await unary(await _parsed(parse, raw, context), context)

            return grpc.unary_unary_rpc_method_handler(unary_parsed,
                                                       response_serializer=serialize)
        if stream is not None:
            async def stream_parsed(raw: bytes, context: Context) -> AsyncIterator[Any]:
                async for item in stream(await _parsed(parse, raw, context), context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(stream_parsed,
                                                        response_serializer=serialize)
        return handler


async def start_control_server(bus: Bus, settings: GatewayService) -> tuple[grpc.aio.Server, int]:
    """The running server and the port it bound (settings.control_port may be 0 in tests)."""
    # a request over the bound is RESOURCE_EXHAUSTED from gRPC before it reaches the service
    # (the largest legitimate one, a Say text, is a few KiB)
    server = grpc.aio.server(interceptors=[ParseInHandler()],
                             options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
    add_ControlServicer_to_server(ControlService(bus, settings), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{settings.gateway_host}:{settings.control_port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("control API ready", extra={"port": port})
    return server, port
