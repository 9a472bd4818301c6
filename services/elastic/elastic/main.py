"""The elastic service: its app factory and its entry point (`ooda-elastic`)."""

from pathlib import Path

from fastapi import FastAPI

from elastic.config import Settings
from elastic.store import messaging
from ooda.service import create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings) -> FastAPI:
    """The elastic HTTP API with its consumers and outbox relay."""
    return create_service_app(
        settings=settings,
        title="OODA elastic",
        description=(
            "Turns scaling decisions and declared goals into changes within policy, budget "
            "and capacity."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
    )


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
