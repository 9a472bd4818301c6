"""The cmdb service: its app factory and its entry point (`ooda-cmdb`)."""

from pathlib import Path

from fastapi import FastAPI

from cmdb import errors
from cmdb.api import router
from cmdb.capacity_metrics import start_refresh
from cmdb.config import Settings
from cmdb.consumer import subscriptions
from cmdb.store import messaging
from ooda.limits import RouteLimit
from ooda.service import create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings) -> FastAPI:
    """The cmdb HTTP API with its consumers and outbox relay."""
    if not isinstance(settings, Settings):
        settings = Settings.model_validate(settings.model_dump())
    app = create_service_app(
        settings=settings,
        title="OODA CMDB",
        description=(
            "The source of truth: zones, pools, hosts, applications and their declared specs,"
            " instances and relations, with the history of every item."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
        subscriptions=subscriptions,
        on_start=start_refresh,
        body_limits=[RouteLimit("POST", "/v1/import", settings.import_max_bytes)],
    )
    errors.install(app)
    return app


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
