"""Alembic environment of the cmdb service."""

from cmdb.store import metadata
from ooda.migrations import run_env

run_env(metadata)
