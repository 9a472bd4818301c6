"""Budgets, quotas, replicas and scale outcomes per team as Prometheus metrics.

Every value is read from elastic's database: a task rebuilds a snapshot every few seconds and
`/metrics` serves it, so a restarted process shows what the stored state says, and the counters
(outcomes, clips, holds) are counts of stored rows that never go back after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import case, column, func, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from elastic.cmdb import CmdbClient, CmdbUnavailable
from elastic.domain import Rule, ScalingPolicy, TeamBudget, period_bounds, used_replica_hours
from elastic.handlers import LIVE
from elastic.store import LearnedState, budgets, load_states, outcomes, policies, quotas, timelines
from ooda.metrics import StoredStateMetrics
from ooda.service import Runtime

log = logging.getLogger(__name__)

ACTIONS = ("scale_up", "scale_down", "hold")
UNASSIGNED = "unassigned"
"""The `team` label of an application elastic has seen deployed but holds no policy for."""
BLIND = "cmdb_unavailable"
"""The `rule` label of a hold taken because the CMDB did not answer."""
AT_TARGET = "at_target"
"""The `rule` label of a hold because the application already runs the decided count."""
HOLD_RULES = (*(r.value for r in Rule), BLIND, AT_TARGET)


@dataclass
class Stored:
    """What one refresh reads from the database (and the CMDB's host-to-pool map)."""

    now: datetime
    policies: dict[str, ScalingPolicy]
    states: dict[str, LearnedState]
    budgets: list[TeamBudget]
    used: dict[str, float]
    quotas: list[dict[str, Any]]
    pool_of_host: Mapping[str, str]
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    clips: dict[tuple[str, str], int] = field(default_factory=dict)
    holds: dict[tuple[str, str], int] = field(default_factory=dict)


async def read_stored(
    session: AsyncSession, now: datetime, pool_of_host: Mapping[str, str]
) -> Stored:
    """Everything the metrics show, in one read transaction."""
    found = {
        r.app: ScalingPolicy.model_validate(r.policy)
        for r in (await session.execute(select(policies.c.app, policies.c.policy))).all()
    }
    team_budgets = [
        TeamBudget.model_validate(r.budget)
        for r in (await session.execute(select(budgets.c.budget))).all()
    ]
    used: dict[str, float] = {}
    for budget in team_budgets:
        apps = [app for app, p in found.items() if p.team == budget.team]
        start, end = period_bounds(budget.period, now)
        lines = await timelines(session, apps, start, end)
        used[budget.team] = used_replica_hours(lines, budget.period, now)
    stored = Stored(
        now=now,
        policies=found,
        states=await load_states(session),
        budgets=team_budgets,
        used=used,
        quotas=[dict(r._mapping) for r in (await session.execute(select(quotas))).all()],
        pool_of_host=pool_of_host,
    )
    count = func.count().label("n")
    rows = await session.execute(
        select(outcomes.c.team, outcomes.c.action, count).group_by(
            outcomes.c.team, outcomes.c.action
        )
    )
    stored.outcomes = {(r.team, r.action): r.n for r in rows}
    clip = (
        func.jsonb_array_elements(outcomes.c.clipped_by)
        .table_valued(column("value", JSONB))
        .alias("clip")
    )
    rule = clip.c.value["rule"].astext
    rows = await session.execute(
        select(outcomes.c.team, rule.label("rule"), count)
        .select_from(outcomes)
        .join(clip, true())
        .group_by(outcomes.c.team, rule)
    )
    stored.clips = {(r.team, r.rule): r.n for r in rows}
    # A hold is held back by the last rule that clipped it (that rule's reason is its reason).
    last_rule = case(
        (outcomes.c.hold_reason.like("capacity and policy unknown%"), BLIND),
        (func.jsonb_array_length(outcomes.c.clipped_by) == 0, AT_TARGET),
        else_=outcomes.c.clipped_by[-1]["rule"].astext,
    )
    rows = await session.execute(
        select(outcomes.c.team, last_rule.label("rule"), count)
        .where(outcomes.c.action == "hold")
        .group_by(outcomes.c.team, last_rule)
    )
    stored.holds = {(r.team, r.rule): r.n for r in rows}
    return stored


def families(stored: Stored) -> list[Metric]:
    """The metric families of one snapshot."""
    team_of = {app: p.team for app, p in stored.policies.items()}
    replicas = {app: sum(s.replicas_by_zone.values()) for app, s in stored.states.items()}
    out: list[Metric] = []

    app_replicas = GaugeMetricFamily(
        "ooda_elastic_app_replicas",
        "Live instances of each application as its latest deploy-done reported them",
        labels=["team", "app"],
    )
    for app, n in sorted(replicas.items()):
        app_replicas.add_metric([team_of.get(app, UNASSIGNED), app], n)
    low = GaugeMetricFamily(
        "ooda_elastic_app_min_replicas", "Policy's minimum replicas", labels=["team", "app"]
    )
    high = GaugeMetricFamily(
        "ooda_elastic_app_max_replicas", "Policy's maximum replicas", labels=["team", "app"]
    )
    for app, policy in sorted(stored.policies.items()):
        low.add_metric([policy.team, app], policy.min_replicas)
        high.add_metric([policy.team, app], policy.max_replicas)
    out += [app_replicas, low, high]

    limit = GaugeMetricFamily(
        "ooda_budget_limit_replica_hours",
        "Team budget for the current period, in replica-hours",
        labels=["team", "period"],
    )
    used = GaugeMetricFamily(
        "ooda_budget_used_replica_hours",
        "Replica-hours the team's applications used so far this period",
        labels=["team"],
    )
    committed = GaugeMetricFamily(
        "ooda_budget_committed_replica_hours",
        "Used so far plus what the team's current replicas use until the period ends",
        labels=["team"],
    )
    for budget in sorted(stored.budgets, key=lambda b: b.team):
        _, end = period_bounds(budget.period, stored.now)
        hours_left = max((end - stored.now) / timedelta(hours=1), 0.0)
        running = sum(n for app, n in replicas.items() if team_of.get(app) == budget.team)
        spent = stored.used.get(budget.team, 0.0)
        limit.add_metric([budget.team, budget.period], budget.limit_replica_hours)
        used.add_metric([budget.team], spent)
        committed.add_metric([budget.team], spent + running * hours_left)
    out += [limit, used, committed]
    out += _quota_families(stored, team_of)

    teams = sorted({*team_of.values(), *(t for t, _ in stored.outcomes)} - {""})
    out.append(
        _counter(
            "ooda_elastic_outcomes",
            "Scale decisions elastic applied, by what it did",
            "action",
            teams,
            ACTIONS,
            stored.outcomes,
        )
    )
    out.append(
        _counter(
            "ooda_elastic_clips",
            "Rules that moved a decision's replica count (capacity includes quotas)",
            "rule",
            teams,
            [r.value for r in Rule],
            stored.clips,
        )
    )
    out.append(
        _counter(
            "ooda_elastic_holds",
            "Decisions held at the current count, by the rule that held them back",
            "rule",
            teams,
            HOLD_RULES,
            stored.holds,
        )
    )
    return out


def _counter(
    name: str,
    doc: str,
    label: str,
    teams: list[str],
    values: Any,
    counts: dict[tuple[str, str], int],
) -> CounterMetricFamily:
    """Every known team and value (zero when none yet), so a rate has a series from the start."""
    family = CounterMetricFamily(name, doc, labels=["team", label])
    keys = {(t, v) for t in teams for v in values} | {k for k in counts if k[0]}
    for team, value in sorted(keys):
        family.add_metric([team, value], counts.get((team, value), 0))
    return family


def _quota_families(stored: Stored, team_of: Mapping[str, str]) -> list[Metric]:
    used: dict[tuple[str, str, str], tuple[int, int]] = {}
    for app, state in stored.states.items():
        policy = stored.policies.get(app)
        if policy is None:
            continue
        for instance in state.instances:
            if instance.get("status") not in LIVE:
                continue
            pool = stored.pool_of_host.get(instance.get("host", ""), "")
            for key in ((team_of[app], "zone", instance["zone"]), (team_of[app], "pool", pool)):
                cpu, mem = used.get(key, (0, 0))
                used[key] = (cpu + policy.request.cpu_millis, mem + policy.request.memory_mib)
    labels = ["team", "scope", "name"]
    cpu_limit = GaugeMetricFamily(
        "ooda_quota_cpu_millis", "CPU a team may claim in a zone or pool", labels=labels
    )
    mem_limit = GaugeMetricFamily(
        "ooda_quota_memory_mib", "Memory a team may claim in a zone or pool", labels=labels
    )
    cpu_used = GaugeMetricFamily(
        "ooda_quota_used_cpu_millis",
        "CPU the team's live instances reserve in the quota's zone or pool",
        labels=labels,
    )
    mem_used = GaugeMetricFamily(
        "ooda_quota_used_memory_mib",
        "Memory the team's live instances reserve in the quota's zone or pool",
        labels=labels,
    )
    for quota in sorted(stored.quotas, key=lambda q: (q["team"], q["scope"], q["name"])):
        key = (quota["team"], quota["scope"], quota["name"])
        cpu_limit.add_metric(list(key), quota["cpu_millis"])
        mem_limit.add_metric(list(key), quota["memory_mib"])
        if quota["scope"] == "pool" and not stored.pool_of_host:
            continue  # which pool each host is in is unknown until the CMDB answers
        cpu, mem = used.get(key, (0, 0))
        cpu_used.add_metric(list(key), cpu)
        mem_used.add_metric(list(key), mem)
    return [cpu_limit, mem_limit, cpu_used, mem_used]


def stored_state_reader(cmdb: CmdbClient) -> Callable[[Runtime], Awaitable[list[Metric]]]:
    """Reads the stored state (and the hosts' pools from the CMDB, the last known ones while it
    does not answer) into metric families."""
    pool_of_host: dict[str, str] = {}

    async def read(rt: Runtime) -> list[Metric]:
        try:
            hosts = await cmdb.hosts(status=None)
            pool_of_host.clear()
            pool_of_host.update({h.id: h.pool_id for h in hosts})
        except CmdbUnavailable as exc:
            log.debug("keeping the last known host pools: %s", exc)
        async with rt.sessions() as session, session.begin():
            stored = await read_stored(session, datetime.now(UTC), dict(pool_of_host))
        return families(stored)

    return read


async def _nothing_yet(rt: Runtime) -> list[Metric]:
    return []


STORED = StoredStateMetrics("budget and capacity", _nothing_yet)
REGISTRY.register(STORED)


def start_refresh(cmdb: CmdbClient) -> Callable[[Runtime], Awaitable[None]]:
    """An `on_start` hook running the refresh task with the service's runtime and CMDB client."""

    async def start(rt: Runtime) -> None:
        STORED.read = stored_state_reader(cmdb)
        await STORED.start(rt)

    return start
