"""Tracing with OpenTelemetry: one trace follows a change across HTTP, the database and Kafka."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

tracer = trace.get_tracer("ooda")


def setup_tracing(service: str, exporter: str = "none") -> TracerProvider:
    """Install the process-wide tracer provider once; later calls return the same provider."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create({"service.name": f"ooda-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach a processor (an exporter, or an in-memory one in tests) to the installed provider."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(processor)


def current_trace_headers() -> dict[str, str]:
    """W3C `traceparent` / `tracestate` of the active span, for carrying in an event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context:
    """The remote context carried by an event's trace headers (empty when there are none)."""
    carrier: dict[str, Any] = {}
    if traceparent:
        carrier["traceparent"] = traceparent
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id inside a `traceparent` header."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else None
