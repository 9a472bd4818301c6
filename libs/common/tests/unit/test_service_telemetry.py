"""Every service traces its API requests (continuing the caller's trace), not its probes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ooda.service import HTTP_TELEMETRY

pytestmark = pytest.mark.unit

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_one_server_span_per_api_request_in_the_callers_trace_and_none_for_probes() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI(telemetry=HTTP_TELEMETRY | {"tracer_provider": provider})

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        traced = await client.get(
            "/v1/things/t-1", headers={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}
        )
        probe = await client.get("/healthz")
    assert traced.status_code == probe.status_code == 200
    spans = exporter.get_finished_spans()
    # One span: the server's, named by the route template, in the caller's trace; no spans of
    # FastAPI's inner steps, and none for the probe.
    assert [(s.name, s.kind) for s in spans] == [("GET /v1/things/{thing_id}", SpanKind.SERVER)]
    (span,) = spans
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200
