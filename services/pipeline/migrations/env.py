"""Alembic environment of the pipeline service."""

from ooda.migrations import run_env
from pipeline.store import metadata

run_env(metadata)
