"""The monitor service: its app factory and its entry point (`ooda-monitor`)."""

from pathlib import Path

from fastapi import FastAPI

from monitor.api import router
from monitor.config import Settings
from monitor.store import messaging
from ooda.service import create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings) -> FastAPI:
    """The monitor HTTP API with its consumers and outbox relay."""
    return create_service_app(
        settings=settings,
        title="OODA monitor",
        description=(
            "Scrapes every instance, aggregates per application and publishes machine-"
            "consumable observations."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
    )


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
