"""Read-side queries of the elastic service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from elastic.cmdb import Host
from elastic.domain import InstanceRequest, period_bounds, zone_slots
from elastic.handlers import budget_usage, host_capacities
from elastic.schemas import BudgetOut, CapacityOut, CapacityRow, OutcomeOut, PolicyOut, QuotaOut
from elastic.store import budgets, outcomes, policies, quotas


async def policy_view(session: AsyncSession, app: str) -> PolicyOut | None:
    """The application's stored policy."""
    row = (await session.execute(select(policies).where(policies.c.app == app))).first()
    return None if row is None else PolicyOut.model_validate(row._mapping)


async def budget_view(session: AsyncSession, team: str, now: datetime) -> BudgetOut | None:
    """The team's budget with used and remaining replica-hours in the current period."""
    row = (await session.execute(select(budgets).where(budgets.c.team == team))).first()
    usage, per_app = await budget_usage(session, team, None, now)
    if row is None or usage is None:
        return None
    start, end = period_bounds(usage.budget.period, now)
    return BudgetOut(
        budget=usage.budget,
        period_start=start,
        period_end=end,
        limit_replica_hours=usage.budget.limit_replica_hours,
        used_replica_hours=usage.used_replica_hours,
        remaining_replica_hours=usage.remaining_replica_hours(),
        used_by_app=per_app,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def quota_views(session: AsyncSession, team: str | None) -> list[QuotaOut]:
    """Quotas, of one team or of all."""
    query = select(quotas).order_by(quotas.c.team, quotas.c.scope, quotas.c.name)
    if team is not None:
        query = query.where(quotas.c.team == team)
    return [QuotaOut.model_validate(r._mapping) for r in (await session.execute(query)).all()]


async def outcome_views(session: AsyncSession, app: str, limit: int) -> list[OutcomeOut]:
    """The application's newest outcomes, newest first."""
    rows = (
        await session.execute(
            select(outcomes)
            .where(outcomes.c.app == app)
            .order_by(outcomes.c.id.desc())
            .limit(limit)
        )
    ).all()
    return [OutcomeOut.model_validate(r._mapping) for r in rows]


def capacity_view(hosts: Sequence[Host], request: InstanceRequest) -> CapacityOut:
    """Free CPU, memory and instance slots per zone and pool."""
    capacities = host_capacities(hosts)
    rows: dict[tuple[str, str], CapacityRow] = {}
    for host in capacities:
        if not host.schedulable:
            continue
        row = rows.get((host.zone, host.pool)) or CapacityRow(
            zone=host.zone, pool=host.pool, hosts=0, free_cpu_millis=0, free_memory_mib=0, slots=0
        )
        rows[(host.zone, host.pool)] = row.model_copy(
            update={
                "hosts": row.hosts + 1,
                "free_cpu_millis": row.free_cpu_millis + host.free_cpu_millis,
                "free_memory_mib": row.free_memory_mib + host.free_memory_mib,
                "slots": row.slots + host.slots(request),
            }
        )
    return CapacityOut(
        request=request,
        pools=[rows[key] for key in sorted(rows)],
        zones=zone_slots(capacities, request),
    )
