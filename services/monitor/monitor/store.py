"""Tables of the monitor's own database."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
)

from ooda.db import Messaging, new_metadata

metadata = new_metadata()
messaging = Messaging(metadata)

rollups = Table(
    "rollups",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("app", String(128), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("values", JSON, nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("app", "window_end", name="uq_rollups_app_window_end"),
)
