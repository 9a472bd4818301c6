"""The decision service: its app factory and its entry point (`ooda-decision`)."""

import asyncio
from pathlib import Path

from fastapi import FastAPI

from decision.api import router
from decision.cmdb import HttpSpecSource, SpecSource
from decision.config import Settings
from decision.consumer import subscriptions
from decision.engine import Engine
from decision.handlers import refresh_hints
from decision.metrics import start_refresh
from decision.store import messaging
from ooda.service import Runtime, close_at_shutdown, create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings, specs: SpecSource | None = None) -> FastAPI:
    """The decision HTTP API with its consumers and outbox relay."""
    assert isinstance(settings, Settings)
    engine = Engine(settings.default_policy, settings.prior_capacity_rps, settings.default_delay_s)
    source = HttpSpecSource(settings.cmdb_url) if specs is None else specs

    async def on_start(rt: Runtime) -> None:
        await start_refresh(rt)
        rt.tasks.append(asyncio.create_task(refresh_hints(engine, source)))
        if isinstance(source, HttpSpecSource):
            close_at_shutdown(rt, source)

    app = create_service_app(
        settings=settings,
        title="OODA decision center",
        description=(
            "Forecasts each application's load and decides how many instances it needs, and why."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
        subscriptions=subscriptions(engine, source, settings),
        on_start=on_start,
    )
    app.state.engine = engine
    return app


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
