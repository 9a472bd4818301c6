"""Tables of the decision center's own database."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("app", String(128), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("current_replicas", Integer, nullable=False),
    Column("desired_replicas", Integer, nullable=False),
    Column("capacity_per_instance", Float, nullable=True),
    Column("forecast", JSON, nullable=True),
    Column("reason", String(500), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("published", Boolean, nullable=False),
    Column("event_id", String(64), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("app", "window_end", name="uq_decisions_app_window_end"),
)

app_state = Table(
    "app_state",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("desired_replicas", Integer, nullable=True),
    Column("delay_s", Float, nullable=True),
    Column("last_sequence", BigInteger, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
