"""The monitor service: its app factory and its entry point (`ooda-monitor`)."""

from pathlib import Path

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from monitor.api import router
from monitor.config import Settings
from monitor.consumer import subscriptions_for
from monitor.loops import Monitor
from monitor.owners import HttpOwners, Owners
from monitor.scraper import Scraper
from monitor.sd import HttpServiceDiscovery, TargetSource
from monitor.store import messaging
from ooda.limits import RouteLimit
from ooda.service import Runtime, close_at_shutdown, create_service_app, run_service
from ooda.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(
    settings: ServiceSettings, source: TargetSource | None = None, owners: Owners | None = None
) -> FastAPI:
    """The monitor HTTP API with its discovery, scrape and retention loops, consumer and relay."""
    config = (
        settings
        if isinstance(settings, Settings)
        else Settings.model_validate(settings.model_dump())
    )
    per_pool = max(1, -(-config.scrape_concurrency // config.scrape_pools))
    clients = [
        httpx.AsyncClient(
            limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
            timeout=config.scrape_timeout,
            follow_redirects=False,
        )
        for _ in range(config.scrape_pools)
    ]
    sd_client = httpx.AsyncClient(timeout=10.0)
    monitor = Monitor(
        source=source or HttpServiceDiscovery(config.cmdb_url, sd_client),
        scraper=Scraper(
            clients,
            timeout_s=config.scrape_timeout,
            max_bytes=config.scrape_max_bytes,
            series_limit=config.series_limit,
            concurrency=config.scrape_concurrency,
        ),
        interval_s=config.scrape_interval_seconds,
        sd_refresh_s=config.sd_refresh_seconds,
        retention_every_s=config.retention_every_seconds,
        cpu_request=config.cpu_request_cores,
    )

    async def on_start(rt: Runtime) -> None:
        # Scrapes are not traced: a span per target per interval would drown real traces.
        for client in clients:
            HTTPXClientInstrumentor.uninstrument_client(client)
        monitor.start(rt)
        close_at_shutdown(rt, *clients, sd_client)

    app = create_service_app(
        settings=config,
        title="OODA monitor",
        description=(
            "Scrapes every instance, aggregates per application and publishes machine-"
            "consumable observations."
        ),
        messaging=messaging,
        migrations_dir=MIGRATIONS,
        routers=[router],
        subscriptions=subscriptions_for(monitor),
        on_start=on_start,
        body_limits=[RouteLimit("POST", "/v1/push", config.scrape_max_bytes)],
    )
    app.state.monitor = monitor
    # Who may push or write alert rules for an application: its owner team in the CMDB.
    app.state.owners = owners or HttpOwners(
        config.cmdb_url, sd_client, ttl_s=config.owner_cache_seconds
    )
    return app


def run() -> None:
    """Migrate the database, then serve."""
    run_service(Settings, create_app, MIGRATIONS)
