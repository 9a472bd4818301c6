"""Alembic helpers: each service keeps its own revisions; these run and check them."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ooda.db import OUTBOX_CHANNEL, Messaging, new_metadata

log = logging.getLogger(__name__)


def alembic_config(migrations_dir: Path, url: str) -> Config:
    """An Alembic config for one service's migrations folder and database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(migrations_dir: Path) -> str | None:
    """The newest revision in a migrations folder."""
    return ScriptDirectory.from_config(
        alembic_config(migrations_dir, "postgresql://")
    ).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        if not exists:
            return None
        return await conn.scalar(text("SELECT version_num FROM alembic_version"))


def upgrade(migrations_dir: Path, url: str) -> None:
    """Migrate a database to the newest revision (blocking; called before serving)."""
    command.upgrade(alembic_config(migrations_dir, url), "head")


async def wait_and_upgrade(migrations_dir: Path, url: str, timeout_s: float = 60.0) -> None:
    """Wait for the database to accept connections, then migrate it: the prestart step."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            break
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"database not reachable after {timeout_s:.0f}s: {exc}") from exc
            log.warning("waiting for the database: %s", exc)
            await asyncio.sleep(1.0)
        finally:
            await engine.dispose()
    await asyncio.to_thread(upgrade, migrations_dir, url)


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py` (async engine, online mode)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())


def create_messaging_v1(op: Operations) -> None:
    """Create the outbox and inbox tables and the trigger that wakes the relay (revision 1)."""
    bind = op.get_bind()
    Messaging(new_metadata()).metadata.create_all(bind)
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION ooda_outbox_notify() RETURNS trigger AS $$
        BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$ LANGUAGE plpgsql;
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION ooda_outbox_notify()"
    )


def drop_messaging_v1(op: Operations) -> None:
    """Undo `create_messaging_v1`."""
    op.execute("DROP TABLE IF EXISTS outbox, inbox CASCADE")
    op.execute("DROP FUNCTION IF EXISTS ooda_outbox_notify()")


def add_outbox_parking(op: Operations) -> None:
    """Let the relay park rows the broker refuses (revision 2; revision 1 creates the current
    tables, so a new database already has the columns)."""
    op.execute(
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at timestamp with time zone, "
        "ADD COLUMN IF NOT EXISTS parked_reason text"
    )


def drop_outbox_parking(op: Operations) -> None:
    """Undo `add_outbox_parking`."""
    op.execute(
        "ALTER TABLE outbox DROP COLUMN IF EXISTS parked_at, DROP COLUMN IF EXISTS parked_reason"
    )


def in_context(connection: Connection) -> Operations:
    """Operations bound to a plain connection (for tests that build schemas directly)."""
    return Operations(MigrationContext.configure(connection))


async def schema_drift(migrations_dir: Path, url: str, metadata: MetaData) -> list[Any]:
    """Migrate `url` to head, then list every difference from the tables `metadata` declares."""
    from alembic.autogenerate import compare_metadata

    await wait_and_upgrade(migrations_dir, url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list(
                await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                    )
                )
            )
    finally:
        await engine.dispose()
