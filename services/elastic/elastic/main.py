"""The elastic service: its app factory and its entry point (`ooda-elastic`)."""

from pathlib import Path

from fastapi import FastAPI

from elastic import errors
from elastic.api import router
from elastic.cmdb import CmdbClient, HttpCmdbClient
from elastic.config import Settings
from elastic.consumer import subscriptions_with
from elastic.metrics import start_refresh
from elastic.store import messaging
from ooda.service import create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings, cmdb: CmdbClient | None = None) -> FastAPI:
    """The elastic HTTP API with its consumers and outbox relay (`cmdb` replaces the HTTP one)."""
    if cmdb is None:
        config = (
            settings
            if isinstance(settings, Settings)
            else Settings.model_validate(settings.model_dump())
        )
        cmdb = HttpCmdbClient(config.cmdb_url, config.cmdb_timeout_seconds)
    app = create_service_app(
        settings=settings,
        title="OODA elastic",
        description=(
            "Turns scaling decisions and declared goals into changes within policy, budget "
            "and capacity."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
        subscriptions=subscriptions_with(cmdb),
        on_start=start_refresh(cmdb),
    )
    app.state.cmdb = cmdb
    errors.install(app)
    return app


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
