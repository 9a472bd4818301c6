"""What every service shares: the runtime (database, producer, relay, consumers), the app factory
with `/healthz`, `/readyz`, `/metrics`, and the `run` entry point with its prestart step."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Protocol

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ooda import problems
from ooda.auth import admin_caller
from ooda.consumer import BatchHandler, EventConsumer, Handler
from ooda.db import Messaging, create_engine, database_answers, session_factory
from ooda.events.contracts import APP_ID_PATTERN
from ooda.limits import BodyLimit, RouteLimit
from ooda.logging import setup_logging
from ooda.migrations import current_revision, head_revision, wait_and_upgrade
from ooda.outbox import Outbox, OutboxRelay, new_producer
from ooda.problems import refused_value, refused_value_answer
from ooda.settings import ServiceSettings, load_settings
from ooda.telemetry import setup_tracing, trace_queries

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 5.0
"""How long each shutdown step (background tasks, the producer's flush) may take."""

AppIdPath = Annotated[str, PathParam(pattern=APP_ID_PATTERN, max_length=128)]

UNOBSERVED_PATHS = ("/healthz", "/readyz", "/metrics")
"""Probes and scrapes: no span and no request metrics (they would drown the API's own)."""

HTTP_TELEMETRY: TelemetryConfig = {
    # FastAPI's own OpenTelemetry: one server span per request, continuing the caller's
    # `traceparent`. No spans for FastAPI's inner steps (dependencies, endpoint, serialisation):
    # three more spans per request cost a get by id more than its database read.
    "exclude": lambda scope: scope.get("path") in UNOBSERVED_PATHS,
    "operation_spans": False,
}


@dataclass
class Subscription:
    """Which topics a service consumes and which handler each event type goes to."""

    topics: Sequence[str]
    handlers: dict[str, Handler | BatchHandler]
    group_id: str | None = None


@dataclass
class Runtime:
    """The live collaborators of one service, built in the lifespan and kept on `app.state`."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    messaging: Messaging
    outbox: Outbox
    producer: AIOKafkaProducer
    migrations_dir: Path
    relay: OutboxRelay | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    kafka_started: asyncio.Event = field(default_factory=asyncio.Event)


async def _supervise(name: str, job: Callable[[], Awaitable[None]], delay: float = 1.0) -> None:
    """Run `job` forever, restarting it after a failure instead of letting the service die."""
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            await asyncio.sleep(delay)


async def _start_kafka(rt: Runtime) -> None:
    while True:
        try:
            await rt.producer.start()
            rt.kafka_started.set()
            return
        except Exception as exc:
            log.warning("Kafka not reachable yet (%s); retrying", exc)
            await asyncio.sleep(2.0)


async def _run_relay(rt: Runtime) -> None:
    await rt.kafka_started.wait()
    assert rt.relay is not None
    await rt.relay.run()


def _consumer_job(rt: Runtime, consumer: EventConsumer) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        try:
            await consumer.run()
        finally:
            await consumer.stop()

    return job


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """A request that failed because the database is down (restarting, failing over) gets a 503 to
    retry, not a 500; a value the database refuses (past its column's type or length, a NUL in
    text) is a 422 that names it; any other database error is a bug, answered without details."""
    if (refused := refused_value(exc)) is not None:
        log.warning("%s %s: value refused: %s", request.method, request.url.path, refused)
        return refused_value_answer(refused)
    if not await database_answers(request.app.state.runtime.sessions):
        log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "2"},
        )
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


class ReadyOut(BaseModel):
    """Whether the service can serve: each dependency `ok`, `unreachable` or `not migrated`."""

    ready: bool
    checks: dict[str, str]


class Closable(Protocol):
    """Something holding connections (an `httpx.AsyncClient`, a client of another service)."""

    async def aclose(self) -> None: ...


def close_at_shutdown(rt: Runtime, *clients: Closable) -> None:
    """Close these clients (HTTP connection pools) when the service stops, after its requests."""

    async def wait_then_close() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.aclose()

    rt.tasks.append(asyncio.create_task(wait_then_close()))


def create_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    messaging: Messaging,
    migrations_dir: Path,
    routers: Sequence[APIRouter] = (),
    subscriptions: Callable[[Runtime], Sequence[Subscription]] = lambda rt: (),
    on_start: Callable[[Runtime], Awaitable[None]] | None = None,
    body_limits: Sequence[RouteLimit] = (),
) -> FastAPI:
    """A FastAPI app for one service, with the runtime started and stopped by its lifespan.

    Every request body is limited while it streams in: `body_limits` for the routes they name,
    `settings.max_body_bytes` for the others (413 past the limit)."""
    name = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_tracing(name, settings.trace_exporter)
        engine = create_engine(settings.database_url)
        trace_queries(engine)
        outbox = Outbox(messaging, source=f"/ooda/{name}", topic_prefix=settings.topic_prefix)
        producer = new_producer(settings.kafka(), client_id=f"ooda-{name}")
        rt = Runtime(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            messaging=messaging,
            outbox=outbox,
            producer=producer,
            migrations_dir=migrations_dir,
        )
        rt.relay = OutboxRelay(
            engine, messaging, producer, name, poll_seconds=settings.outbox_poll_seconds
        )
        for sub in subscriptions(rt):
            rt.consumers.append(
                EventConsumer(
                    service=name,
                    group_id=settings.topic_prefix + (sub.group_id or f"ooda-{name}"),
                    topics=[settings.topic_prefix + topic for topic in sub.topics],
                    handlers=sub.handlers,
                    sessions=rt.sessions,
                    messaging=messaging,
                    outbox=outbox,
                    bootstrap=settings.kafka(),
                    max_attempts=settings.consumer_max_attempts,
                )
            )
        app.state.runtime = rt
        rt.tasks.append(asyncio.create_task(_start_kafka(rt)))
        rt.tasks.append(asyncio.create_task(_supervise("outbox relay", lambda: _run_relay(rt))))
        for consumer in rt.consumers:
            rt.tasks.append(
                asyncio.create_task(
                    _supervise(f"consumer {consumer.group_id}", _consumer_job(rt, consumer))
                )
            )
        if on_start is not None:
            await on_start(rt)
        try:
            yield
        finally:
            # Bounded: with Kafka unreachable a consumer leaving its group or the producer
            # flushing could wait forever, and a service must stop on SIGTERM.
            for task in rt.tasks:
                task.cancel()
            if rt.tasks:
                await asyncio.wait(rt.tasks, timeout=SHUTDOWN_SECONDS)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), SHUTDOWN_SECONDS)
            await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        telemetry=HTTP_TELEMETRY,
    )
    app.state.settings = settings
    app.state.migrations_head = head_revision(migrations_dir)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Database migrated and Kafka reachable",
        description="Why a dependency is not ready is shown to callers with an admin token only.",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "A dependency is not ready"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        reasons: dict[str, str] = {}
        try:
            revision = await asyncio.wait_for(current_revision(rt.engine), 3)
            head = request.app.state.migrations_head
            if revision == head:
                checks["database"] = "ok"
            else:
                checks["database"] = "not migrated"
                reasons["database"] = f"at revision {revision}, expected {head}"
        except Exception as exc:
            checks["database"] = "unreachable"
            reasons["database"] = f"{type(exc).__name__}: {exc}"
        try:
            if not rt.kafka_started.is_set():
                raise ConnectionError("producer not connected yet")
            await asyncio.wait_for(rt.producer.client.fetch_all_metadata(), 3)
            checks["kafka"] = "ok"
        except Exception as exc:
            checks["kafka"] = "unreachable"
            reasons["kafka"] = f"{type(exc).__name__}: {exc}"
        ok = all(v == "ok" for v in checks.values())
        if reasons:
            log.warning("not ready: %s", reasons)
        # Connection errors name hosts, ports and users: only an administrator sees them.
        shown = {
            name: f"{state}: {reasons[name]}" if name in reasons else state
            for name, state in checks.items()
        }
        body = {"ready": ok, "checks": shown if admin_caller(request) else checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    problems.install(app)
    problems.document_errors(app, unguarded=("/healthz", "/metrics"))
    app.add_exception_handler(DBAPIError, database_error)
    # A route may use the driver's connection directly (the CMDB's get by id): its errors too.
    app.add_exception_handler(asyncpg.PostgresError, database_error)
    app.add_exception_handler(asyncpg.InterfaceError, database_error)
    app.add_exception_handler(OSError, database_error)

    for router in routers:
        app.include_router(router)
    app.add_middleware(
        BodyLimit, service=name, default_bytes=settings.max_body_bytes, routes=body_limits
    )
    Instrumentator(excluded_handlers=list(UNOBSERVED_PATHS)).instrument(app)
    HTTPXClientInstrumentor().instrument()
    return app


def run_service(
    settings_cls: type[ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    migrations_dir: Path,
) -> None:
    """Entry point of a service: read settings, wait for the database and migrate, then serve."""
    settings = load_settings(settings_cls)
    setup_logging(settings.service_name, settings.log_level)
    asyncio.run(wait_and_upgrade(migrations_dir, settings.database_url))
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
