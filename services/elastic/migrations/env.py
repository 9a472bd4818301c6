"""Alembic environment of the elastic service."""

from elastic.store import metadata
from ooda.migrations import run_env

run_env(metadata)
