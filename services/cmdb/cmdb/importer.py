"""Bulk import: JSON lines or CSV rows, checked together, written as one change set."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cmdb.domain import AttributeSchema, Item, references
from cmdb.errors import Invalid
from cmdb.handlers import Owners, _reference_loc, validate_item
from cmdb.schemas import COLLECTIONS, RowError
from cmdb.store import ChangeSet, get_items, items, live_values, snapshot
from ooda.auth import Actor
from ooda.outbox import Outbox


def _nest(row: Mapping[str, str]) -> dict[str, Any]:
    """A CSV row as an object: dotted columns nest (`labels.team`, `replicas.min`)."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column is None or value is None or value == "":
            continue
        target = out
        *parents, leaf = column.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return out


def parse_rows(content: str, fmt: str) -> list[dict[str, Any] | RowError]:
    """The rows of a JSON lines or CSV import, each an object or the error that it is not."""
    rows: list[dict[str, Any] | RowError] = []
    if fmt == "csv":
        for row in csv.DictReader(io.StringIO(content)):
            rows.append(_nest(row))
        return rows
    for line in content.splitlines():
        if not line.strip():
            continue
        number = len(rows) + 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(RowError(row=number, loc=[], msg=f"not JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            rows.append(RowError(row=number, loc=[], msg="expected a JSON object"))
        else:
            rows.append(value)
    return rows


@dataclass
class ImportOutcome:
    """What an import did (or would do), and every bad row."""

    rows: int
    applied: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    change_set_id: str | None = None
    errors: list[RowError] = field(default_factory=list)
    refused: int = 0
    """How many of the errors are rows the actor may not change (the rest are bad rows)."""


async def import_items(
    session: AsyncSession,
    outbox: Outbox,
    actor: Actor,
    parsed: list[dict[str, Any] | RowError],
    schemas: Mapping[str, AttributeSchema],
    *,
    dry_run: bool,
    atomic: bool,
    at: datetime,
) -> ImportOutcome:
    """Check every row, then write the good ones as one change set (all-or-nothing if atomic)."""
    outcome = ImportOutcome(rows=len(parsed))
    kinds = set(COLLECTIONS.values())
    good: dict[int, Item] = {}
    for number, row in enumerate(parsed, start=1):
        if isinstance(row, RowError):
            outcome.errors.append(row)
            continue
        kind, item_id = row.get("kind"), row.get("id")
        if kind not in kinds or not isinstance(item_id, str):
            msg = (
                f"kind must be one of {', '.join(sorted(kinds))}"
                if kind not in kinds
                else "id is required"
            )
            outcome.errors.append(
                RowError(row=number, loc=["kind" if kind not in kinds else "id"], msg=msg)
            )
            continue
        try:
            good[number] = validate_item(str(kind), item_id, row, schemas, loc=())
        except Invalid as exc:
            outcome.errors.extend(
                RowError(row=number, loc=p["loc"], msg=p["msg"]) for p in exc.extra["problems"]
            )
    seen: dict[tuple[str, str], int] = {}
    for number, item in list(good.items()):
        key = (item.kind, item.id)
        if key in seen:
            outcome.errors.append(
                RowError(row=number, loc=["id"], msg=f"{item.ref} is also in row {seen[key]}")
            )
            del good[number]
        else:
            seen[key] = number
    current = await get_items(session, [(i.kind, i.id) for i in good.values()])
    afters = {number: snapshot(item) for number, item in good.items()}
    befores = {
        number: stored.live if (stored := current.get((item.kind, item.id))) else None
        for number, item in good.items()
    }
    owners = await Owners.load(
        session, [d for n in good for d in (afters[n], befores[n]) if d is not None]
    )
    for number in list(good):
        refused = owners.refusal(actor, afters[number], befores[number])
        if refused is not None:
            outcome.errors.append(RowError(row=number, loc=[], msg=refused))
            outcome.refused += 1
            del good[number]
    referenced = {(r.kind, r.id) for item in good.values() for r in references(item)}
    existing = set(await live_values(session, referenced, items.c.kind))
    changed = True
    while changed:  # a row referring to a bad row is bad too
        changed = False
        pending: set[tuple[str, str]] = {(i.kind, i.id) for i in good.values()}
        for number, item in list(good.items()):
            problems = [
                RowError(
                    row=number,
                    loc=[_reference_loc(item, ref, index)],
                    msg=f"{ref.kind} {ref.id!r} does not exist",
                )
                for index, ref in enumerate(references(item))
                if (ref.kind, ref.id) not in pending and (ref.kind, ref.id) not in existing
            ]
            if problems:
                outcome.errors.extend(problems)
                del good[number]
                changed = True
    outcome.errors.sort(key=lambda e: e.row)
    if (outcome.errors and atomic) or dry_run:
        for number in good:
            before = befores[number]
            if before is None:
                outcome.created += 1
            elif before == afters[number]:
                outcome.unchanged += 1
            else:
                outcome.updated += 1
        return outcome
    change_set = ChangeSet(session, outbox, actor.subject, None, at)
    for op in await change_set.put_many(list(good.values()), [afters[n] for n in good]):
        if op == "create":
            outcome.created += 1
        elif op == "update":
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    change_set.publish()
    outcome.applied = True
    outcome.change_set_id = change_set.id if change_set.changes else None
    return outcome
