"""Tracing with OpenTelemetry: one trace follows a change across HTTP, the database and Kafka."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

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


def trace_queries(engine: AsyncEngine) -> None:
    """A client span for every statement the engine runs, in the trace of the work that ran it.

    OpenTelemetry's SQLAlchemy instrumentation, attached to this engine alone: its `instrument()`
    also wraps `Engine.connect` everywhere, with a `connect` span for every pool checkout (every
    request) that tells nothing a statement's span does not, and costs a get by id about a
    twentieth of its time.
    """
    EngineTracer(
        trace.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        engine.sync_engine,
        metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
            "db.client.connections.usage",
            unit="connections",
            description="Connections in the state the `state` attribute names.",
        ),
    )


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
