"""HTTP routes of the elastic service: parse, call a handler or a view, answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert

from elastic.cmdb import CmdbClient, CmdbUnavailable
from elastic.domain import InstanceRequest, ScalingPolicy, TeamBudget
from elastic.migrate import request_migration
from elastic.schemas import (
    BudgetIn,
    BudgetOut,
    CapacityOut,
    MigrationIn,
    MigrationOut,
    OutcomeOut,
    PolicyIn,
    PolicyOut,
    QuotaIn,
    QuotaOut,
)
from elastic.store import (
    LearnedState,
    load_states,
    quotas,
    save_budget,
    save_policy,
)
from elastic.views import budget_view, capacity_view, outcome_views, policy_view, quota_views
from ooda.auth import Actor, AuthenticatedActor
from ooda.bounds import Positive32
from ooda.events.contracts import APP_ID_PATTERN
from ooda.service import AppIdPath as AppId
from ooda.service import Runtime

router = APIRouter(prefix="/v1")
Name = Annotated[str, PathParam(pattern=APP_ID_PATTERN, max_length=128)]
TeamQuery = Annotated[str | None, Query(pattern=APP_ID_PATTERN, max_length=128)]
INFRA = "infra"


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _cmdb(request: Request) -> CmdbClient:
    client: CmdbClient = request.app.state.cmdb
    return client


Rt = Annotated[Runtime, Depends(_runtime)]
Cmdb = Annotated[CmdbClient, Depends(_cmdb)]


def _require_infra(actor: Actor) -> None:
    if not actor.has(INFRA):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"actor {actor.subject!r} needs scope {INFRA!r} or 'admin'",
        )


def _unprocessable(exc: ValidationError) -> HTTPException:
    reasons = "; ".join(e["msg"] for e in exc.errors())
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=reasons)


def _not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=what)


async def authorize_owner(cmdb: CmdbClient, actor: Actor, app: str) -> str:
    """The application's owner team in the CMDB, once `actor` may act for it (404, 403).

    The CMDB names the owner, never the request: naming a team in a body grants nothing. An
    unreachable CMDB raises CmdbUnavailable (503).
    """
    owner = await cmdb.owner_team(app)
    if owner is None:
        raise _not_found(f"unknown application {app!r}: the CMDB does not know it")
    actor.require(f"team:{owner}")
    return owner


@router.put(
    "/apps/{app}/policy",
    response_model=PolicyOut,
    tags=["policies"],
    summary="Set an application's scaling policy (token with team:<owner in the CMDB>)",
)
async def put_policy(
    app: AppId, body: PolicyIn, actor: AuthenticatedActor, rt: Rt, cmdb: Cmdb
) -> PolicyOut:
    owner = await authorize_owner(cmdb, actor, app)
    if body.team is not None and body.team != owner:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"application {app!r} is owned by team {owner!r} in the CMDB, not {body.team!r}",
        )
    try:
        policy = ScalingPolicy(app_id=app, **{**body.model_dump(), "team": owner})
    except ValidationError as exc:
        raise _unprocessable(exc) from exc
    async with rt.sessions() as session, session.begin():
        await save_policy(session, policy, source="api", actor=actor.subject)
        view = await policy_view(session, app)
    assert view is not None
    return view


@router.get("/apps/{app}/policy", response_model=PolicyOut, tags=["policies"])
async def get_policy(app: AppId, rt: Rt) -> PolicyOut:
    """The application's scaling policy (set over the API or derived from its CMDB spec)."""
    async with rt.sessions() as session:
        view = await policy_view(session, app)
    if view is None:
        raise _not_found(f"application {app!r} has no scaling policy")
    return view


@router.get(
    "/apps/{app}/state",
    response_model=LearnedState,
    tags=["policies"],
    summary="The application's instances per zone as the latest deploy-done left them",
)
async def get_state(app: AppId, rt: Rt) -> LearnedState:
    async with rt.sessions() as session:
        found = (await load_states(session, [app])).get(app)
    if found is None:
        raise _not_found(f"no deploy-done seen yet for application {app!r}")
    return found


@router.get(
    "/apps/{app}/outcomes",
    response_model=list[OutcomeOut],
    tags=["policies"],
    summary="What became of the application's scale decisions, and why they clipped or held",
)
async def get_outcomes(
    app: AppId, rt: Rt, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[OutcomeOut]:
    async with rt.sessions() as session:
        return await outcome_views(session, app, limit)


@router.put(
    "/teams/{team}/budget",
    response_model=BudgetOut,
    tags=["budgets"],
    summary="Set a team's budget per period (token: infra or admin)",
)
async def put_budget(
    team: Name, body: BudgetIn, actor: AuthenticatedActor, rt: Rt, cmdb: Cmdb
) -> BudgetOut:
    # A budget is a control over the team, so the team itself cannot raise it.
    _require_infra(actor)
    try:
        budget = TeamBudget(team=team, **body.model_dump())
    except ValidationError as exc:
        raise _unprocessable(exc) from exc
    try:
        known = await cmdb.team_known(team)
    except CmdbUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    if not known:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"unknown team {team!r}: no application in the CMDB is owned by it",
        )
    now = datetime.now(UTC)
    async with rt.sessions() as session, session.begin():
        await save_budget(session, budget, actor=actor.subject)
        view = await budget_view(session, team, now)
    assert view is not None
    return view


@router.get(
    "/teams/{team}/budget",
    response_model=BudgetOut,
    tags=["budgets"],
    summary="A team's budget with what it used and has left in the current period",
)
async def get_budget(team: Name, rt: Rt) -> BudgetOut:
    async with rt.sessions() as session:
        view = await budget_view(session, team, datetime.now(UTC))
    if view is None:
        raise _not_found(f"team {team!r} has no budget")
    return view


@router.put(
    "/quotas/{team}/{scope}/{name}",
    response_model=QuotaOut,
    tags=["quotas"],
    summary="Set the CPU and memory a team may claim in a zone or pool (token: infra or admin)",
)
async def put_quota(
    team: Name,
    scope: Literal["zone", "pool"],
    name: Name,
    body: QuotaIn,
    actor: AuthenticatedActor,
    rt: Rt,
) -> QuotaOut:
    _require_infra(actor)
    async with rt.sessions() as session, session.begin():
        stmt = insert(quotas).values(
            team=team, scope=scope, name=name, updated_by=actor.subject, **body.model_dump()
        )
        await session.execute(
            stmt.on_conflict_do_update(
                constraint="pk_quotas",
                set_={
                    "cpu_millis": stmt.excluded.cpu_millis,
                    "memory_mib": stmt.excluded.memory_mib,
                    "updated_by": stmt.excluded.updated_by,
                    "updated_at": datetime.now(UTC),
                },
            )
        )
        found = [q for q in await quota_views(session, team) if (q.scope, q.name) == (scope, name)]
    return found[0]


@router.get("/quotas", response_model=list[QuotaOut], tags=["quotas"])
async def get_quotas(
    rt: Rt, team: Annotated[str | None, Query(pattern=APP_ID_PATTERN, max_length=128)] = None
) -> list[QuotaOut]:
    """Quotas per team, zone and pool."""
    async with rt.sessions() as session:
        return await quota_views(session, team)


@router.get("/quotas/{team}", response_model=list[QuotaOut], tags=["quotas"])
async def get_team_quotas(team: Name, rt: Rt) -> list[QuotaOut]:
    """One team's quotas per zone and pool."""
    async with rt.sessions() as session:
        return await quota_views(session, team)


@router.get(
    "/capacity",
    response_model=CapacityOut,
    tags=["capacity"],
    summary="Free capacity per pool and zone from the CMDB's hosts that are up",
)
async def get_capacity(
    cmdb: Cmdb,
    cpu_millis: Annotated[Positive32, Query()] = 500,
    memory_mib: Annotated[Positive32, Query()] = 512,
) -> CapacityOut:
    request = InstanceRequest(cpu_millis=cpu_millis, memory_mib=memory_mib)
    return capacity_view(await cmdb.hosts(), request)


@router.post(
    "/migrations",
    response_model=MigrationOut,
    status_code=status.HTTP_201_CREATED,
    tags=["migrations"],
    summary="Plan moving all instances out of a zone or pool; request one migrate per application",
)
async def post_migration(
    body: MigrationIn, actor: AuthenticatedActor, rt: Rt, cmdb: Cmdb
) -> MigrationOut:
    _require_infra(actor)
    if body.target is not None and body.target == body.source:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="target is the same scope as source"
        )
    async with rt.sessions() as session, session.begin():
        migration_id, plan, requests = await request_migration(
            session,
            rt.outbox,
            cmdb,
            body.source,
            body.target,
            body.max_batch_size,
            body.reason,
            actor.subject,
            datetime.now(UTC),
        )
    return MigrationOut(id=migration_id, plan=plan, change_requests=requests)
