"""HTTP routes of the decision center."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from decision.views import LoadPoint, recent_load
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
