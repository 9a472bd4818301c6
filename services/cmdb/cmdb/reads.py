"""The connections the read-only routes use: a pool of the cmdb's own, in autocommit.

A read is one statement (or a few, each seeing the latest committed data, as in the default READ
COMMITTED transaction), so it needs no transaction: no BEGIN and ROLLBACK around it. A pooled
connection is checked without a round trip: one the server has closed (a restart, a terminated
backend) is replaced before use; the runtime's pool instead pings the server in a transaction of
three round trips at every checkout, which costs a get by id more than its query. Writes keep
the runtime's sessions and their transactions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ooda.service import Runtime
from ooda.telemetry import trace_queries

POOL_SIZE = 10
MAX_OVERFLOW = 10


@asynccontextmanager
async def read_pool(app: FastAPI) -> AsyncIterator[None]:
    """Open the read pool for the app's lifetime (inside the runtime's lifespan)."""
    rt: Runtime = app.state.runtime
    engine = create_async_engine(
        rt.settings.database_url,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        # Reads are short: compiling a plan to machine code (PostgreSQL's JIT, on when a plan's
        # estimated cost is high, as a selector over a million items can be) costs more than it
        # saves, and makes the slowest answers slower.
        connect_args={"server_settings": {"jit": "off"}},
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    trace_queries(engine)
    app.state.read_engine = engine
    app.state.reads = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


def _refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Make the pool replace a connection the server has closed (it retries the checkout)."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def reads(request: Request) -> AsyncSession:
    """A session for a read-only route (use it as `async with reads(request) as session`)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.reads
    return factory()


def read_connection(request: Request) -> AsyncConnection:
    """A bare connection for the hottest reads (`async with read_connection(request) as conn`)."""
    engine: AsyncEngine = request.app.state.read_engine
    return engine.connect()
