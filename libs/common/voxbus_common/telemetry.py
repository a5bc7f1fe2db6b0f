"""OpenTelemetry setup and W3C trace-context propagation through NATS headers.

nats-py has no official instrumentation, so the bus helpers call `inject_headers` when
publishing turn-level messages and `extract_context` when consuming them. Audio frames carry
no trace headers (never a span per frame).
"""

from __future__ import annotations

import os

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def setup_tracing(service: str) -> None:
    """Install a tracer provider; export over OTLP only when an endpoint is configured."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"voxbus-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Current trace context as NATS headers (traceparent, tracestate)."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str] | None) -> otel_context.Context:
    """Trace context carried by a NATS message (empty context if none)."""
    return propagate.extract(headers or {})
