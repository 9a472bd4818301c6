"""Request and response models of the cmdb's HTTP API, and the collections it serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

COLLECTIONS: dict[str, str] = {
    "regions": "region",
    "zones": "zone",
    "pools": "pool",
    "hosts": "host",
    "apps": "application",
    "instances": "instance",
    "relations": "relation",
}
"""URL collection -> item kind (`/v1/apps/{id}` holds applications)."""

INFRA_KINDS = frozenset({"region", "zone", "pool", "host"})
"""Kinds that belong to the platform team (scope `infra` or `admin`), not to an application."""

KINDS = frozenset({*COLLECTIONS.values(), "application_spec"})

Op = Literal["create", "update", "delete"]


class WriteResult(BaseModel):
    """What a write did: the item afterwards, the operation (None: unchanged) and its change set."""

    item: dict[str, Any] | None
    op: Op | None = Field(description="null when the item already had exactly this content")
    change_set_id: str | None


class ItemPage(BaseModel):
    """One page of items; pass `next` as `cursor` for the following page."""

    items: list[dict[str, Any]]
    next: str | None


class RevisionOut(BaseModel):
    """One change to one item."""

    sequence: int
    change_set_id: str
    kind: str
    id: str
    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str
    cause: str | None
    at: datetime


class HistoryOut(BaseModel):
    """An item's revisions (up to `as_of` when given) and its state at that time."""

    kind: str
    id: str
    as_of: datetime | None = None
    state: dict[str, Any] | None = Field(
        None, description="the item as of `as_of` (or now); null if it did not exist"
    )
    revisions: list[RevisionOut]


class ChangeSetOut(BaseModel):
    """One change set: who, why, when, what it reverts or was reverted by, and its revisions."""

    id: str
    actor: str
    cause: str | None
    at: datetime
    reverts: str | None
    reverted_by: str | None
    revisions: list[RevisionOut]


class RowError(BaseModel):
    """One problem in one row of an import (rows count from 1, the CSV header not included)."""

    row: int
    loc: list[str | int]
    msg: str


class ImportResult(BaseModel):
    """What an import did, or would do in a dry run, and every bad row."""

    dry_run: bool
    applied: bool
    rows: int
    created: int
    updated: int
    unchanged: int
    change_set_id: str | None
    errors: list[RowError]


class SpecOut(BaseModel):
    """A spec write: the current spec and whether this call made a new revision."""

    spec: dict[str, Any]
    revision: int
    created: bool
    change_set_id: str | None
    change_request_id: str | None
