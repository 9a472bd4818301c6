"""Alembic environment of the monitor service."""

from monitor.store import metadata
from ooda.migrations import run_env

run_env(metadata)
