"""A service's database statements are spans in the trace of the work that ran them."""

from __future__ import annotations

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from ooda.db import create_engine
from ooda.telemetry import add_span_processor, trace_queries, tracer
from ooda.testing import Infra


async def test_one_client_span_per_statement_under_the_request_and_none_per_checkout(
    infra: Infra,
) -> None:
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    engine = create_engine(infra.database_url("ooda_test"))
    trace_queries(engine)
    try:
        with tracer.start_as_current_span("request") as root:
            for _ in range(2):  # two checkouts, one statement each
                async with engine.connect() as conn:
                    assert await conn.scalar(text("SELECT 41 + 1")) == 42
    finally:
        await engine.dispose()
    ours = root.get_span_context()
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == ours.trace_id]
    children = [s for s in spans if s is not None and s.name != "request"]
    assert len(children) == 2, [s.name for s in spans]
    for span in children:
        assert span.kind == SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == ours.span_id
        assert span.attributes is not None and "41 + 1" in str(span.attributes["db.statement"])
