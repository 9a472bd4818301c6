"""Tables of the decision center's own database."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
)

from ooda.db import Messaging, new_metadata

metadata = new_metadata()
messaging = Messaging(metadata)

load_history = Table(
    "load_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("app", String(128), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("request_rate", Float, nullable=True),
    Column("values", JSON, nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("trace_id", String(32), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("app", "window_end", name="uq_load_history_app_window_end"),
)
