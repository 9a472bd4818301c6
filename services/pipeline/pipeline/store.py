"""Tables of the pipeline service's own database."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from ooda.db import Messaging, new_metadata

metadata = new_metadata()
messaging = Messaging(metadata)

changes = Table(
    "changes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("app", String(128), nullable=False, index=True),
    Column("request_id", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("body", JSON, nullable=False, comment="the domain Change, serialised"),
    Column("batch", JSON, nullable=False, comment="the BatchSpec the change is cut with"),
    Column("artifact", String(64), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("cause", String(300), nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "traceparent",
        String(128),
        nullable=True,
        comment="W3C traceparent of the request; the change's events continue its trace",
    ),
    Column("tracestate", String(512), nullable=True),
    UniqueConstraint("app", "request_id", name="uq_changes_app_request_id"),
)

app_state = Table(
    "app_state",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("version", String(128), nullable=True),
    Column("replicas", Integer, nullable=False, server_default="0"),
    Column("sequence", BigInteger, nullable=False, server_default="0"),
    Column("artifacts", JSON, nullable=False, comment="version -> artifact sha256"),
    Column("pin", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

freezes = Table(
    "freezes",
    metadata,
    Column("scope", String(64), primary_key=True, comment="'global'"),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True), nullable=True),
)

change_windows = Table(
    "change_windows",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("windows", JSON, nullable=False, comment="texts such as 'Mon-Fri 09:00-17:00 UTC'"),
    Column("actor", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("app", String(128), nullable=False, index=True),
    Column("change_id", String(64), nullable=True),
    Column("version", String(128), nullable=False),
    Column("artifact", String(64), nullable=False),
    Column("host", String(128), nullable=False),
    Column("zone", String(128), nullable=False),
    Column("port", Integer, nullable=True),
    Column(
        "address",
        String(253),
        nullable=True,
        comment="host name or IPv4 address the instance answers at; null: 127.0.0.1",
    ),
    Column("pid", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ready_at", DateTime(timezone=True), nullable=True),
    Column("stopped_at", DateTime(timezone=True), nullable=True),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("uploaded_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "team",
        String(253),
        nullable=True,
        index=True,
        comment="the team whose quota the artifact counts against (none before quotas)",
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column(
        "action", String(32), nullable=False, comment="freeze, lift-freeze, windows, unpin, ..."
    ),
    Column("app", String(128), nullable=True, index=True, comment="none: platform-wide"),
    Column("detail", Text, nullable=False, server_default=""),
    comment="who used an operator control, and when (the controls keep only their state)",
)
