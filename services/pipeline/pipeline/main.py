"""The pipeline service: its app factory and its entry point (`ooda-pipeline`)."""

from pathlib import Path

from fastapi import FastAPI

from ooda.service import create_service_app, run_service
from ooda.settings import ServiceSettings
from pipeline.config import Settings
from pipeline.store import messaging

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(settings: ServiceSettings) -> FastAPI:
    """The pipeline HTTP API with its consumers and outbox relay."""
    return create_service_app(
        settings=settings,
        title="OODA pipeline",
        description=(
            "Executes changes as batched, health-gated, reversible rollouts through runtime "
            "drivers."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
    )


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
