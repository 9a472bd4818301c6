"""Use cases of the elastic service, one async function each; the caller owns the transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from elastic.cmdb import CmdbClient, CmdbUnavailable, Host
from elastic.domain import (
    BudgetUsage,
    CurrentState,
    Decision,
    HostCapacity,
    InstanceRequest,
    Outcome,
    Quota,
    ScalingPolicy,
    TeamBudget,
    apply_policy,
    period_bounds,
    used_replica_hours,
    zone_slots,
)
from elastic.store import (
    action_times,
    app_state,
    load_budget,
    load_policy,
    load_states,
    outcomes,
    record_action,
    record_usage,
    save_budget,
    save_policy,
    set_pending,
    team_policies,
    team_quotas,
    timelines,
)
from ooda.consumer import PermanentError
from ooda.events import Event
from ooda.events.contracts import ChangeRequested, ChangeTarget, DeployDone, ScaleDecided
from ooda.outbox import Outbox

SERVICE = "service:elastic"
LIVE = ("starting", "ready")
ACTION_LOOKBACK = timedelta(days=1)
PENDING_HORIZON = timedelta(hours=1)


def change_request_id(app: str, suffix: str) -> str:
    """`elastic/{app}/{suffix}`, hashed when it would exceed the contract's 200 characters."""
    request_id = f"elastic/{app}/{suffix}"
    if len(request_id) > 200:
        request_id = f"elastic/{app}/{hashlib.sha256(suffix.encode()).hexdigest()[:32]}"
    return request_id


def host_capacities(hosts: Iterable[Host]) -> list[HostCapacity]:
    """What is free on each host that is up, from the CMDB's totals and allocations."""
    return [
        HostCapacity(
            host_id=h.id,
            zone=h.zone_id,
            pool=h.pool_id,
            free_cpu_millis=max(h.cpu_millis - h.allocated.cpu_millis, 0),
            free_memory_mib=max(h.memory_mib - h.allocated.memory_mib, 0),
            schedulable=h.status == "up",
        )
        for h in hosts
    ]


async def ensure_policy(
    session: AsyncSession, cmdb: CmdbClient, app: str
) -> tuple[ScalingPolicy, str]:
    """The application's policy; without one, derive it from its CMDB spec and store it."""
    policy = await load_policy(session, app)
    if policy is not None:
        return policy, "stored"
    spec = await cmdb.spec(app)
    team = await cmdb.owner_team(app) if spec is not None else None
    if spec is None or team is None:
        raise PermanentError(f"unknown application {app!r}: no policy here and no spec in the CMDB")
    policy = ScalingPolicy(
        app_id=app,
        team=team,
        min_replicas=spec.replicas.min,
        max_replicas=max(spec.replicas.max, spec.replicas.min, 1),
        target_utilisation=spec.scaling.target_utilisation,
        request=InstanceRequest(
            cpu_millis=spec.resources.cpu_millis, memory_mib=spec.resources.memory_mib
        ),
    )
    await save_policy(session, policy, source="cmdb-spec", actor=SERVICE, replace=False)
    if spec.budget is not None and spec.budget.period in ("day", "week", "month"):
        # The spec's budget seeds the team's budget only when the team has none yet.
        budget = TeamBudget.model_validate(
            {"team": team, "period": spec.budget.period, "limit": spec.budget.replica_hours}
        )
        await save_budget(session, budget, actor=SERVICE, replace=False)
    return policy, "derived from CMDB spec revision " + str(spec.revision)


async def budget_usage(
    session: AsyncSession, team: str, app: str | None, now: datetime
) -> tuple[BudgetUsage | None, dict[str, float]]:
    """A team's budget with what it used this period (per application), or None without one."""
    budget = await load_budget(session, team)
    if budget is None:
        return None, {}
    apps = set(await team_policies(session, team))
    if app is not None:
        apps.add(app)
    start, end = period_bounds(budget.period, now)
    lines = await timelines(session, apps, start, end)
    per_app = {t.app_id: t.replica_hours(start, now) for t in lines}
    states = await load_states(session, apps - {app} if app else apps)
    others = sum(sum(s.replicas_by_zone.values()) for s in states.values())
    usage = BudgetUsage(
        budget=budget,
        used_replica_hours=used_replica_hours(lines, budget.period, now),
        other_replicas=others,
    )
    return usage, per_app


async def remaining_quotas(session: AsyncSession, team: str, hosts: Sequence[Host]) -> list[Quota]:
    """What the team may still claim per zone and pool: each limit minus what its apps run."""
    limits = await team_quotas(session, team)
    if not limits:
        return []
    policies = await team_policies(session, team)
    states = await load_states(session, policies.keys())
    pool_of = {h.id: h.pool_id for h in hosts}
    used: dict[tuple[str, str], tuple[int, int]] = {}
    for app, state in states.items():
        request = policies[app].request
        for instance in state.instances:
            if instance.get("status") not in LIVE:
                continue
            for key in (("zone", instance["zone"]), ("pool", pool_of.get(instance["host"], ""))):
                cpu, mem = used.get(key, (0, 0))
                used[key] = (cpu + request.cpu_millis, mem + request.memory_mib)
    quotas = []
    for limit in limits:
        cpu, mem = used.get((limit["scope"], limit["name"]), (0, 0))
        quotas.append(
            Quota(
                scope=limit["scope"],
                name=limit["name"],
                cpu_millis=max(limit["cpu_millis"] - cpu, 0),
                memory_mib=max(limit["memory_mib"] - mem, 0),
            )
        )
    return quotas


def clipping_summary(outcome: Outcome, decision_reason: str) -> str:
    """One line saying what was asked, what is requested, and every rule that moved it."""
    head = f"decision asked {outcome.requested_replicas}, requesting {outcome.final_replicas}"
    if not outcome.clipped_by:
        return f"{head} (within policy): {decision_reason}"
    clips = "; ".join(
        f"{c.rule.value} {c.from_replicas}->{c.to_replicas}: {c.reason}" for c in outcome.clipped_by
    )
    return f"{head}; clipped by {clips}"


async def decide_scale(
    session: AsyncSession, outbox: Outbox, cmdb: CmdbClient, event: Event, now: datetime
) -> None:
    """Apply policy, budget and capacity to a scale decision; request the change once per id."""
    decided = event.data
    assert isinstance(decided, ScaleDecided)
    app = decided.app
    seen = await session.execute(
        select(outcomes.c.id).where(outcomes.c.decision_id == decided.decision_id)
    )
    if seen.first() is not None:
        return
    learned = (await load_states(session, [app])).get(app)
    expected = learned.expected_by_zone(now, PENDING_HORIZON) if learned else {}
    try:
        policy, policy_source = await ensure_policy(session, cmdb, app)
        hosts = await cmdb.hosts()
    except CmdbUnavailable as exc:
        # Decisions come again every interval: hold this one, say why, and take the next.
        stored = await load_policy(session, app)
        await _hold_blind(session, event, stored.team if stored else "", expected, str(exc), now)
        return
    # Instances in a zone with no host up are lost: count only the rest, so that the
    # decision re-places that capacity in the healthy zones.
    healthy = {h.zone_id for h in hosts if h.status == "up"}
    failed_zones = sorted(zone for zone in expected if zone not in healthy)
    lost = [
        f"zone {z} has no host up: its {expected[z]} instances are re-placed" for z in failed_zones
    ]
    state = CurrentState(
        app_id=app,
        replicas_by_zone={zone: n for zone, n in expected.items() if zone in healthy},
        action_times=tuple(await action_times(session, app, now - ACTION_LOOKBACK)),
    )
    usage, _ = await budget_usage(session, policy.team, app, now)
    quotas = await remaining_quotas(session, policy.team, hosts)
    slots = zone_slots(host_capacities(hosts), policy.request, quotas)
    outcome = apply_policy(
        Decision(app_id=app, desired_replicas=decided.desired_replicas, reasons=(decided.reason,)),
        state,
        policy,
        usage,
        slots,
        now,
    )
    request_id = None if outcome.action == "hold" else change_request_id(app, decided.decision_id)
    inputs: dict[str, Any] = {
        "decision": decided.model_dump(mode="json"),
        "policy": policy.model_dump(mode="json"),
        "policy_source": policy_source,
        "replicas_by_zone": expected,
        "failed_zones": failed_zones,
        "deploy_sequence": learned.sequence if learned else None,
        "pending_request": learned.pending if learned else None,
        "free_slots": slots,
        "budget": None
        if usage is None
        else {
            "limit_replica_hours": usage.budget.limit_replica_hours,
            "used_replica_hours": usage.used_replica_hours,
            "other_replicas": usage.other_replicas,
        },
        "quotas": [q.model_dump(mode="json") for q in quotas],
    }
    inserted = await session.execute(
        insert(outcomes)
        .values(
            decision_id=decided.decision_id,
            app=app,
            team=policy.team,
            cause=event.id,
            inputs=inputs,
            action=outcome.action,
            current_replicas=outcome.current_replicas,
            requested_replicas=outcome.requested_replicas,
            final_replicas=outcome.final_replicas,
            placement=outcome.placement,
            clipped_by=[c.model_dump(mode="json") for c in outcome.clipped_by],
            hold_reason=outcome.hold_reason,
            notes=[*outcome.notes, *lost],
            change_request_id=request_id,
            decided_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_outcomes_decision_id")
        .returning(outcomes.c.id)
    )
    if inserted.first() is None or request_id is None:
        return
    outbox.add(
        session,
        ChangeRequested(
            app=app,
            request_id=request_id,
            kind="scale",
            target=ChangeTarget(replicas=outcome.final_replicas, placement=outcome.placement),
            requested_by=SERVICE,
            cause=event.id,
            reason=clipping_summary(outcome, decided.reason)[:2000],
        ),
    )
    await record_action(session, app, request_id, now)
    await set_pending(session, app, request_id, outcome.placement, now)


async def _hold_blind(
    session: AsyncSession,
    event: Event,
    team: str,
    by_zone: dict[str, int],
    reason: str,
    now: datetime,
) -> None:
    decided = event.data
    assert isinstance(decided, ScaleDecided)
    current = sum(by_zone.values())
    await session.execute(
        insert(outcomes)
        .values(
            decision_id=decided.decision_id,
            app=decided.app,
            team=team,
            cause=event.id,
            inputs={"decision": decided.model_dump(mode="json"), "replicas_by_zone": by_zone},
            action="hold",
            current_replicas=current,
            requested_replicas=decided.desired_replicas,
            final_replicas=current,
            placement=by_zone,
            clipped_by=[],
            hold_reason=f"capacity and policy unknown: {reason}",
            notes=[],
            change_request_id=None,
            decided_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_outcomes_decision_id")
    )


async def learn_from_deploy(session: AsyncSession, event: Event) -> None:
    """Take the application's instances, action time and usage from a finished change."""
    done = event.data
    assert isinstance(done, DeployDone)
    live = [i for i in done.instances if i.status in LIVE]
    by_zone: dict[str, int] = {}
    for instance in live:
        by_zone[instance.zone] = by_zone.get(instance.zone, 0) + 1
    values = {
        "app": done.app,
        "sequence": done.sequence,
        "replicas_by_zone": by_zone,
        "instances": [
            {"id": i.id, "host": i.host, "zone": i.zone, "status": i.status} for i in done.instances
        ],
    }
    stmt = insert(app_state).values(values)
    # Only a newer sequence replaces what we know: a late, older report changes nothing.
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[app_state.c.app],
            set_={
                "sequence": stmt.excluded.sequence,
                "replicas_by_zone": stmt.excluded.replicas_by_zone,
                "instances": stmt.excluded.instances,
                "updated_at": func.now(),
            },
            where=stmt.excluded.sequence > app_state.c.sequence,
        )
    )
    await session.execute(
        update(app_state)
        .where(
            app_state.c.app == done.app, app_state.c.pending["request_id"].astext == done.request_id
        )
        .values(pending=None)
    )
    if done.kind in ("scale", "migrate"):
        await record_action(session, done.app, done.request_id, done.finished_at)
    await record_usage(session, done.app, done.finished_at, len(live))
