"""The elastic service's migrations build exactly the tables its store declares."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from elastic.main import MIGRATIONS
from elastic.store import metadata
from ooda.migrations import wait_and_upgrade
from ooda.testing import Infra, create_database

pytestmark = pytest.mark.integration


async def test_the_migrated_database_matches_the_store_tables(infra: Infra) -> None:
    url = await create_database(infra, "elastic")
    await wait_and_upgrade(MIGRATIONS, url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []
