"""The pipeline service: its app factory and its entry point (`ooda-pipeline`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from ooda.limits import RouteLimit
from ooda.service import Runtime, create_service_app, run_service
from ooda.settings import ServiceSettings
from pipeline.api import router
from pipeline.artifact_handlers import collect_periodically
from pipeline.bootstrap import build
from pipeline.cmdb import Cmdb
from pipeline.config import Settings
from pipeline.consumer import subscriptions_for
from pipeline.driver import Driver
from pipeline.executor import Executor, utcnow
from pipeline.gates import MetricGate
from pipeline.store import messaging

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(
    settings: ServiceSettings,
    *,
    cmdb: Cmdb | None = None,
    driver: Driver | None = None,
    gates: Sequence[MetricGate] = (),
) -> FastAPI:
    """The pipeline HTTP API with its consumer, outbox relay and executor."""
    if not isinstance(settings, Settings):
        settings = Settings.model_validate(settings.model_dump())
    parts = build(settings, cmdb=cmdb, driver=driver, gates=gates)

    async def on_start(rt: Runtime) -> None:
        parts.executor = Executor(
            rt.sessions,
            rt.outbox,
            parts.cmdb,
            parts.driver,
            parts.artifacts,
            gates=parts.gates,
            poll_s=settings.executor_poll_seconds,
            health_timeout_s=settings.health_timeout_seconds,
            liveness_s=settings.liveness_seconds,
            liveness_grace_s=settings.liveness_grace_seconds,
        )
        executing = asyncio.create_task(parts.executor.run())
        rt.tasks.append(executing)
        rt.tasks.append(
            asyncio.create_task(
                collect_periodically(
                    rt.sessions,
                    parts.artifacts,
                    parts.cmdb,
                    timedelta(seconds=settings.artifact_gc_grace_seconds),
                    settings.artifact_gc_interval_seconds,
                    utcnow,
                )
            )
        )
        if driver is None:  # built here from the settings, so closed here (a given one is not)
            rt.tasks.append(asyncio.create_task(_close_driver_at_stop(parts.driver, executing)))

    app = create_service_app(
        settings=settings,
        title="OODA pipeline",
        description=(
            "Executes changes as batched, health-gated, reversible rollouts through runtime "
            "drivers."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
        subscriptions=subscriptions_for(settings.default_batch_percent, parts.wake),
        on_start=on_start,
        body_limits=[RouteLimit("POST", "/v1/artifacts", settings.artifact_max_bytes)],
    )
    app.state.pipeline = parts
    return app


async def _close_driver_at_stop(driver: Driver, executing: asyncio.Task[None]) -> None:
    """At shutdown, once the executor has stopped, close the driver (its SSH connections)."""
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.wait([executing], timeout=5)
        close = getattr(driver, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
