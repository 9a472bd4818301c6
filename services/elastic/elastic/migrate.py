"""Batch migration: plan moving every instance out of a zone or pool, request it per application."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from elastic.cmdb import CmdbClient
from elastic.domain import (
    AppRequirement,
    MigrationPlan,
    PlacedInstance,
    Scope,
    Unmoved,
    plan_migration,
)
from elastic.handlers import LIVE, change_request_id, ensure_policy, host_capacities
from elastic.store import (
    LearnedState,
    load_states,
    migrations,
    record_action,
    set_pending,
)
from ooda.consumer import PermanentError
from ooda.events.contracts import ChangeRequested, ChangeTarget
from ooda.outbox import Outbox


def _placement_after(state: LearnedState, plan: MigrationPlan, app: str) -> dict[str, int]:
    counts = dict(state.replicas_by_zone)
    for batch in plan.batches:
        for move in batch.moves:
            if move.app_id == app:
                counts[move.from_zone] = counts.get(move.from_zone, 0) - 1
                counts[move.to_zone] = counts.get(move.to_zone, 0) + 1
    return {zone: n for zone, n in sorted(counts.items()) if n > 0}


async def request_migration(
    session: AsyncSession,
    outbox: Outbox,
    cmdb: CmdbClient,
    source: Scope,
    target: Scope | None,
    max_batch_size: int,
    reason: str,
    actor: str,
    now: datetime,
) -> tuple[str, MigrationPlan, dict[str, str]]:
    """Plan moving every instance out of `source`; request one migrate change per application."""
    hosts = await cmdb.hosts(status=None)
    pool_of = {h.id: h.pool_id for h in hosts}
    states = await load_states(session)
    concerned = {
        app: state
        for app, state in states.items()
        if any(
            source.contains(i["zone"], pool_of.get(i["host"], "")) and i["status"] in LIVE
            for i in state.instances
        )
    }
    requirements: dict[str, AppRequirement] = {}
    unplannable: list[Unmoved] = []
    for app in sorted(concerned):
        try:
            policy, _ = await ensure_policy(session, cmdb, app)
        except PermanentError as exc:
            unplannable += [
                Unmoved(instance_id=i["id"], app_id=app, reason=str(exc))
                for i in concerned[app].instances
                if source.contains(i["zone"], pool_of.get(i["host"], ""))
            ]
            continue
        requirements[app] = AppRequirement(
            app_id=app, request=policy.request, min_available=policy.min_replicas
        )
    instances = [
        PlacedInstance(
            instance_id=i["id"],
            app_id=app,
            host_id=i["host"],
            zone=i["zone"],
            pool=pool_of.get(i["host"], ""),
            ready=i["status"] == "ready",
        )
        for app in requirements
        for i in concerned[app].instances
        if i["status"] in LIVE
    ]
    plan = plan_migration(
        source,
        instances,
        host_capacities(h for h in hosts if h.status == "up"),
        requirements,
        max_batch_size,
        target,
    )
    plan = plan.model_copy(update={"unmoved": (*plan.unmoved, *unplannable)})
    migration_id = uuid.uuid4().hex[:16]
    requests = _publish_migrations(
        session, outbox, concerned, plan, source, target, migration_id, reason, actor
    )
    for app, request_id in requests.items():
        await record_action(session, app, request_id, now)
        await set_pending(
            session, app, request_id, _placement_after(concerned[app], plan, app), now
        )
    await session.execute(
        migrations.insert().values(
            id=migration_id,
            source=source.model_dump(mode="json"),
            target=None if target is None else target.model_dump(mode="json"),
            max_batch_size=max_batch_size,
            plan=plan.model_dump(mode="json"),
            change_request_ids=requests,
            requested_by=actor,
            reason=reason,
        )
    )
    return migration_id, plan, requests


def _publish_migrations(
    session: AsyncSession,
    outbox: Outbox,
    states: Mapping[str, LearnedState],
    plan: MigrationPlan,
    source: Scope,
    target: Scope | None,
    migration_id: str,
    reason: str,
    actor: str,
) -> dict[str, str]:
    requests: dict[str, str] = {}
    moving = sorted({m.app_id for b in plan.batches for m in b.moves})
    for app in moving:
        batches = [[m for m in b.moves if m.app_id == app] for b in plan.batches]
        steps = " | ".join(
            f"batch {n}: " + ", ".join(f"{m.instance_id} {m.from_host}->{m.to_host}" for m in ms)
            for n, ms in enumerate((ms for ms in batches if ms), start=1)
        )
        placement = _placement_after(states[app], plan, app)
        request_id = change_request_id(app, f"migration-{migration_id}")
        outbox.add(
            session,
            ChangeRequested(
                app=app,
                request_id=request_id,
                kind="migrate",
                target=ChangeTarget(
                    replicas=sum(placement.values()),
                    placement=placement,
                    from_zone=source.name if source.kind == "zone" else None,
                    from_pool=source.name if source.kind == "pool" else None,
                    to_zone=target.name if target and target.kind == "zone" else None,
                    to_pool=target.name if target and target.kind == "pool" else None,
                ),
                requested_by=actor,
                cause=f"elastic/migration/{migration_id}",
                reason=f"{reason}: move out of {source.kind} {source.name}; {steps}"[:2000],
            ),
        )
        requests[app] = request_id
    return requests
