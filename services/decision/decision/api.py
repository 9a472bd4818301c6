"""HTTP routes of the decision center."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from decision.views import DecisionOut, LoadPoint, one_decision, recent_decisions, recent_load
from ooda.bounds import NO_NUL
from ooda.service import AppIdPath as AppId
from ooda.service import Runtime

router = APIRouter(prefix="/v1", tags=["load"])


@router.get(
    "/apps/{app}/load",
    response_model=list[LoadPoint],
    summary="The application's recent load history, as learned from metric-observed",
)
async def get_load(
    app: AppId, request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[LoadPoint]:
    rt: Runtime = request.app.state.runtime
    async with rt.sessions() as session:
        return await recent_load(session, app, limit)


@router.get(
    "/apps/{app}/decisions",
    response_model=list[DecisionOut],
    tags=["decisions"],
    summary="The application's recent decisions with their inputs, forecast and reason",
)
async def get_decisions(
    app: AppId,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    published: Annotated[bool, Query(description="only those sent as scale-decided")] = False,
) -> list[DecisionOut]:
    rt: Runtime = request.app.state.runtime
    async with rt.sessions() as session:
        return await recent_decisions(session, app, limit, published)


@router.get(
    "/decisions/{decision_id}",
    response_model=DecisionOut,
    tags=["decisions"],
    summary="One decision by id",
)
async def get_decision(
    decision_id: Annotated[str, Path(max_length=200, pattern=NO_NUL)], request: Request
) -> DecisionOut:
    rt: Runtime = request.app.state.runtime
    async with rt.sessions() as session:
        found = await one_decision(session, decision_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no decision {decision_id!r}")
    return found
