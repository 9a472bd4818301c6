"""Each service's migrations build exactly the tables its store declares."""

from __future__ import annotations

import importlib

import pytest

from ooda.migrations import schema_drift
from ooda.testing import SERVICES, Infra, create_database

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", SERVICES)
async def test_the_migrated_database_matches_the_store_tables(infra: Infra, service: str) -> None:
    main = importlib.import_module(f"{service}.main")
    store = importlib.import_module(f"{service}.store")
    url = await create_database(infra, service)
    assert await schema_drift(main.MIGRATIONS, url, store.metadata) == []
