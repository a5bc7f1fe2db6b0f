"""A gRPC channel to the control API that presents a bearer token on every call (the API
wants one, also from loopback: services/gateway/voxbus_gateway/control/auth.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc


def _with_token(details: grpc.aio.ClientCallDetails, header: tuple[str, str]
                ) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), header)
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata,
                                      details.credentials, details.wait_for_ready)


# One class per call type: grpc.aio files an interceptor under the first type it matches.
class BearerUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    async def intercept_unary_unary(self, continuation: Callable[..., Any],
                                    details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(_with_token(details, self.header), request)


class BearerStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    async def intercept_unary_stream(self, continuation: Callable[..., Any],
                                     details: grpc.aio.ClientCallDetails, request: Any
                                     ) -> AsyncIterator[Any] | Any:
        return await continuation(_with_token(details, self.header), request)


def control_channel(target: str, token: str) -> grpc.aio.Channel:
    """An insecure (loopback, or behind a TLS proxy) channel; no token: none presented."""
    interceptors = [BearerUnary(token), BearerStream(token)] if token else None
    return grpc.aio.insecure_channel(target, interceptors=interceptors)
