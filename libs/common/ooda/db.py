"""Database plumbing: engines, the naming convention, and the outbox and inbox tables."""

from __future__ import annotations

import asyncio

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OUTBOX_CHANNEL = "ooda_outbox"


def new_metadata() -> MetaData:
    """Metadata with the platform's constraint naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class OutboxRow:
    """One event waiting in (or already relayed from) the outbox."""

    id: int
    topic: str
    key: bytes | None
    headers: list[list[str]]
    value: bytes
    event_id: str | None


class InboxRow:
    """One consumed event, recorded in the transaction of its effects."""

    consumer: str
    event_id: str
    topic: str
    outcome: str
    error: str | None


class Messaging:
    """The outbox and inbox tables of one service's database, mapped for batched inserts."""

    def __init__(self, metadata: MetaData) -> None:
        self.metadata = metadata
        self.outbox = Table(
            "outbox",
            metadata,
            Column("id", BigInteger, primary_key=True, autoincrement=True),
            Column("topic", String(200), nullable=False),
            Column("key", LargeBinary, nullable=True),
            Column("headers", JSONB, nullable=False),
            Column("value", LargeBinary, nullable=False),
            Column("event_id", String(200), nullable=True),
            Column(
                "created_at", DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
            Column("sent_at", DateTime(timezone=True), nullable=True),
            # set when the broker refused the row for what it is; the relay skips it
            Column("parked_at", DateTime(timezone=True), nullable=True),
            Column("parked_reason", Text, nullable=True),
            Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
        )
        self.inbox = Table(
            "inbox",
            metadata,
            Column("consumer", String(200), primary_key=True),
            Column("event_id", String(300), primary_key=True),
            Column("topic", String(200), nullable=False),
            Column("outcome", String(20), nullable=False),
            Column("error", Text, nullable=True),
            Column(
                "processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
        )
        mapper = registry(metadata=metadata)
        # A subclass per instance, so several databases (in tests) never share one mapping.
        self.outbox_row: type[OutboxRow] = type("OutboxRow", (OutboxRow,), {})
        self.inbox_row: type[InboxRow] = type("InboxRow", (InboxRow,), {})
        mapper.map_imperatively(self.outbox_row, self.outbox)
        mapper.map_imperatively(self.inbox_row, self.inbox)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for one service's database."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def asyncpg_dsn(url: str) -> str:
    """The plain libpq URL of a SQLAlchemy asyncpg URL (for LISTEN/NOTIFY connections)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def database_answers(
    sessions: async_sessionmaker[AsyncSession], timeout_s: float = 3.0
) -> bool:
    """True when the database runs a trivial query within `timeout_s` (tells a database outage
    from a failure of the work itself)."""
    try:
        async with asyncio.timeout(timeout_s), sessions() as session:
            await session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
