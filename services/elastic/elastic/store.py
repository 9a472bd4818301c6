"""Tables of the elastic service's own database."""

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from elastic.domain import ReplicaSample, ScalingPolicy, TeamBudget, UsageTimeline
from ooda.db import Messaging, new_metadata

metadata = new_metadata()
messaging = Messaging(metadata)


def _now() -> Column[object]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


policies = Table(
    "policies",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("team", String(128), nullable=False, index=True),
    Column("policy", JSONB, nullable=False),
    Column("source", String(20), nullable=False),
    Column("updated_by", String(200), nullable=False),
    _now(),
)

budgets = Table(
    "budgets",
    metadata,
    Column("team", String(128), primary_key=True),
    Column("budget", JSONB, nullable=False),
    Column("updated_by", String(200), nullable=False),
    _now(),
)

quotas = Table(
    "quotas",
    metadata,
    Column("team", String(128), nullable=False),
    Column("scope", String(10), nullable=False),
    Column("name", String(128), nullable=False),
    Column("cpu_millis", BigInteger, nullable=False),
    Column("memory_mib", BigInteger, nullable=False),
    Column("updated_by", String(200), nullable=False),
    _now(),
    PrimaryKeyConstraint("team", "scope", "name", name="pk_quotas"),
)

app_state = Table(
    "app_state",
    metadata,
    Column("app", String(128), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("replicas_by_zone", JSONB, nullable=False),
    Column("instances", JSONB, nullable=False),
    Column("pending", JSONB, nullable=True),
    _now(),
)

actions = Table(
    "actions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("app", String(128), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("app", "request_id", name="uq_actions_app_request_id"),
)

usage_samples = Table(
    "usage_samples",
    metadata,
    Column("app", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("replicas", Integer, nullable=False),
    PrimaryKeyConstraint("app", "at", name="pk_usage_samples"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("decision_id", String(200), nullable=False, unique=True),
    Column("app", String(128), nullable=False, index=True),
    Column("team", String(128), nullable=False),
    Column("cause", String(200), nullable=False),
    Column("inputs", JSONB, nullable=False),
    Column("action", String(20), nullable=False),
    Column("current_replicas", Integer, nullable=False),
    Column("requested_replicas", Integer, nullable=False),
    Column("final_replicas", Integer, nullable=False),
    Column("placement", JSONB, nullable=False),
    Column("clipped_by", JSONB, nullable=False),
    Column("hold_reason", Text, nullable=True),
    Column("notes", JSONB, nullable=False),
    Column("change_request_id", String(200), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)

migrations = Table(
    "migrations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("source", JSONB, nullable=False),
    Column("target", JSONB, nullable=True),
    Column("max_batch_size", Integer, nullable=False),
    Column("plan", JSONB, nullable=False),
    Column("change_request_ids", JSONB, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


# Repositories: reads and writes in the caller's transaction; they never commit.


async def load_policy(session: AsyncSession, app: str) -> ScalingPolicy | None:
    """The application's scaling policy, if it has one."""
    row = (await session.execute(select(policies.c.policy).where(policies.c.app == app))).first()
    return None if row is None else ScalingPolicy.model_validate(row.policy)


async def save_policy(
    session: AsyncSession, policy: ScalingPolicy, source: str, actor: str, replace: bool = True
) -> None:
    """Store an application's policy (or keep the existing one when `replace` is false)."""
    values = {
        "app": policy.app_id,
        "team": policy.team,
        "policy": policy.model_dump(mode="json"),
        "source": source,
        "updated_by": actor,
    }
    stmt = insert(policies).values(values)
    if replace:
        stmt = stmt.on_conflict_do_update(
            index_elements=[policies.c.app],
            set_={**{k: stmt.excluded[k] for k in values if k != "app"}, "updated_at": func.now()},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[policies.c.app])
    await session.execute(stmt)


async def load_budget(session: AsyncSession, team: str) -> TeamBudget | None:
    """The team's budget, if it has one."""
    row = (await session.execute(select(budgets.c.budget).where(budgets.c.team == team))).first()
    return None if row is None else TeamBudget.model_validate(row.budget)


async def save_budget(
    session: AsyncSession, budget: TeamBudget, actor: str, replace: bool = True
) -> None:
    """Store a team's budget (or keep the existing one when `replace` is false)."""
    stmt = insert(budgets).values(
        team=budget.team, budget=budget.model_dump(mode="json"), updated_by=actor
    )
    if replace:
        stmt = stmt.on_conflict_do_update(
            index_elements=[budgets.c.team],
            set_={
                "budget": stmt.excluded.budget,
                "updated_by": stmt.excluded.updated_by,
                "updated_at": func.now(),
            },
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[budgets.c.team])
    await session.execute(stmt)


class LearnedState(BaseModel):
    """An application's instances as the latest `deploy-done` left them."""

    app: str
    sequence: int
    replicas_by_zone: dict[str, int]
    instances: list[dict[str, Any]]
    pending: dict[str, Any] | None = None

    def expected_by_zone(self, now: datetime, horizon: timedelta) -> dict[str, int]:
        """Instances per zone once the change elastic requested last is done.

        Until its `deploy-done` arrives, the requested placement is the best estimate of the
        application's size; a request older than `horizon` is presumed lost and ignored.
        """
        if self.pending is not None:
            at = datetime.fromisoformat(self.pending["at"])
            if now - at < horizon:
                return {z: int(n) for z, n in self.pending["placement"].items()}
        return self.replicas_by_zone


async def load_states(
    session: AsyncSession, apps: Collection[str] | None = None
) -> dict[str, LearnedState]:
    """Learned state of the given applications (all when `apps` is None)."""
    query = select(app_state)
    if apps is not None:
        query = query.where(app_state.c.app.in_(list(apps)))
    rows = (await session.execute(query)).all()
    return {r.app: LearnedState.model_validate(r._mapping) for r in rows}


async def set_pending(
    session: AsyncSession, app: str, request_id: str, placement: dict[str, int], at: datetime
) -> None:
    """Remember the change elastic just requested until its `deploy-done` arrives."""
    pending = {"request_id": request_id, "placement": placement, "at": at.isoformat()}
    stmt = insert(app_state).values(
        app=app, sequence=-1, replicas_by_zone={}, instances=[], pending=pending
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[app_state.c.app],
            set_={"pending": stmt.excluded.pending, "updated_at": func.now()},
        )
    )


async def team_policies(session: AsyncSession, team: str) -> dict[str, ScalingPolicy]:
    """Every policy of a team's applications, by application."""
    rows = (await session.execute(select(policies.c.policy).where(policies.c.team == team))).all()
    found = (ScalingPolicy.model_validate(r.policy) for r in rows)
    return {p.app_id: p for p in found}


async def action_times(session: AsyncSession, app: str, since: datetime) -> list[datetime]:
    """When the application's scale actions happened since `since`."""
    rows = await session.execute(
        select(actions.c.at).where(actions.c.app == app, actions.c.at >= since)
    )
    return list(rows.scalars())


async def record_action(session: AsyncSession, app: str, request_id: str, at: datetime) -> None:
    """One scale action per change request; a later report of the same change moves its time."""
    stmt = insert(actions).values(app=app, request_id=request_id, at=at)
    await session.execute(
        stmt.on_conflict_do_update(
            constraint="uq_actions_app_request_id",
            set_={"at": func.greatest(actions.c.at, stmt.excluded.at)},
        )
    )


async def record_usage(session: AsyncSession, app: str, at: datetime, replicas: int) -> None:
    """A replica-count sample; a replay keeps the larger count, so it changes nothing."""
    stmt = insert(usage_samples).values(app=app, at=at, replicas=replicas)
    await session.execute(
        stmt.on_conflict_do_update(
            constraint="pk_usage_samples",
            set_={"replicas": func.greatest(usage_samples.c.replicas, stmt.excluded.replicas)},
        )
    )


async def timelines(
    session: AsyncSession, apps: Collection[str], start: datetime, end: datetime
) -> list[UsageTimeline]:
    """Each application's samples within [start, end), plus the last one before `start`."""
    if not apps:
        return []
    s = usage_samples
    within = (
        await session.execute(
            select(s.c.app, s.c.at, s.c.replicas).where(
                s.c.app.in_(list(apps)), s.c.at >= start, s.c.at < end
            )
        )
    ).all()
    before = (
        await session.execute(
            select(s.c.app, s.c.at, s.c.replicas)
            .where(s.c.app.in_(list(apps)), s.c.at < start)
            .ext(distinct_on(s.c.app))
            .order_by(s.c.app, s.c.at.desc())
        )
    ).all()
    by_app: dict[str, UsageTimeline] = {app: UsageTimeline(app_id=app) for app in apps}
    for row in [*before, *within]:
        by_app[row.app] = by_app[row.app].record(ReplicaSample(at=row.at, replicas=row.replicas))
    return list(by_app.values())


async def team_quotas(session: AsyncSession, team: str) -> list[dict[str, Any]]:
    """The team's quota limits per zone and pool."""
    rows = await session.execute(
        select(quotas).where(quotas.c.team == team).order_by(quotas.c.scope, quotas.c.name)
    )
    return [dict(r._mapping) for r in rows]
