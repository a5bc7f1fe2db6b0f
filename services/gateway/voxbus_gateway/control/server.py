"""Starting the control API: the Control service, standard health checking (for Kubernetes
gRPC probes, no token needed) and reflection (grpcurl), on VOXBUS_CONTROL_PORT."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from voxbus.v1 import control_pb2
from voxbus.v1.control_pb2_grpc import add_ControlServicer_to_server
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_gateway.control.service import ControlService

log = logging.getLogger(__name__)

SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


async def start_control_server(bus: Bus, settings: Settings) -> tuple[grpc.aio.Server, int]:
    """The running server and the port it bound (settings.control_port may be 0 in tests)."""
    server = grpc.aio.server()
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
