"""The decision service: its app factory and its entry point (`ooda-decision`)."""

from pathlib import Path

from fastapi import FastAPI

from decision.api import router
from decision.config import Settings
from decision.consumer import subscriptions
from decision.store import messaging
from ooda.service import create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings) -> FastAPI:
    """The decision HTTP API with its consumers and outbox relay."""
    return create_service_app(
        settings=settings,
        title="OODA decision center",
        description=(
            "Forecasts each application's load and decides how many instances it needs, and why."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
        subscriptions=subscriptions,
    )


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
