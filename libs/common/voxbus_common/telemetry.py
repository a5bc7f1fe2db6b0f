"""OpenTelemetry setup and W3C trace-context propagation through NATS headers.

nats-py has no official instrumentation, so the bus helpers call `inject_headers` when
publishing turn-level messages and `extract_context` when consuming them. Audio frames carry
no trace headers (never a span per frame).

No voxbus code puts conversation text on a span; every exporter is still wrapped in a
redactor (docs/privacy.md), because a recorded exception's message or an error status may
quote what a caller said.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status

_configured = False


def setup_tracing(service: str, redact: Callable[[str], str] | None = None) -> None:
    """Install a tracer provider; export over OTLP only when an endpoint is configured.
    `redact` (default: the process settings' VOXBUS_REDACT_PII) cleans every exported span."""
    global _configured
    if _configured:
        return
    if redact is None:
        from voxbus_common.config import get_settings
        from voxbus_common.redact import Redactor

        redact = Redactor.from_setting(get_settings().redact_pii)
    provider = TracerProvider(resource=Resource.create({"service.name": f"voxbus-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            RedactingSpanExporter(OTLPSpanExporter(), redact)))
    trace_dir = os.environ.get("VOXBUS_TRACE_DIR")
    if trace_dir:  # local debugging and tests: one JSON line per span, per process
        path = Path(trace_dir) / f"{service}-{os.getpid()}.jsonl"
        provider.add_span_processor(SimpleSpanProcessor(
            RedactingSpanExporter(JsonLinesSpanExporter(path), redact)))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer() -> trace.Tracer:
    return trace.get_tracer("voxbus")


class RedactingSpanExporter(SpanExporter):
    """Passes spans on with string attributes, event attributes (a recorded exception's
    message and stack) and the status description redacted; ids are left alone."""

    def __init__(self, inner: SpanExporter, redact: Callable[[str], str]) -> None:
        self.inner = inner
        self.redact = redact

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self.clean(span) for span in spans])

    def clean(self, span: ReadableSpan) -> ReadableSpan:
        status = span.status
        if status.description:
            status = Status(status.status_code, self.redact(status.description))
        return ReadableSpan(
            name=span.name, context=span.get_span_context(), parent=span.parent,
            resource=span.resource, attributes=self._attributes(span.attributes),
            events=[Event(e.name, self._attributes(e.attributes), e.timestamp)
                    for e in span.events],
            links=span.links, kind=span.kind, status=status, start_time=span.start_time,
            end_time=span.end_time, instrumentation_scope=span.instrumentation_scope)

    def _attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: self.redact(v) if isinstance(v, str) and not k.endswith("id") else v
                for k, v in (attributes or {}).items()}

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans as JSON lines (ids in hex, as in W3C traceparent)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            self._file.write(json.dumps({
                "name": span.name,
                "service": (span.resource.attributes.get("service.name") if span.resource
                            else ""),
                "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else "",
                "start_ns": span.start_time, "end_ns": span.end_time,
                "attributes": dict(span.attributes or {}),
            }, default=str) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Current trace context as NATS headers (traceparent, tracestate)."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str] | None) -> otel_context.Context:
    """Trace context carried by a NATS message (empty context if none)."""
    return propagate.extract(headers or {})
