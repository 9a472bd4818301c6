"""Alembic environment of the decision service."""

from decision.store import metadata
from ooda.migrations import run_env

run_env(metadata)
