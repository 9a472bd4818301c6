"""HTTP routes of the monitor: parse, call a handler, answer."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from monitor.handlers import record_observation
from monitor.schemas import ObservationIn, ObservationOut
from ooda.auth import Actor, requires
from ooda.service import AppIdPath as AppId
from ooda.service import Runtime

router = APIRouter(prefix="/v1", tags=["observations"])


@router.post(
    "/apps/{app}/observations",
    response_model=ObservationOut,
    status_code=status.HTTP_201_CREATED,
    summary="Record one window of an application's aggregates and publish metric-observed",
)
async def post_observation(
    app: AppId,
    body: ObservationIn,
    request: Request,
    response: Response,
    actor: Annotated[Actor, Depends(requires("metrics:push"))],
) -> ObservationOut:
    rt: Runtime = request.app.state.runtime
    async with rt.sessions() as session, session.begin():
        out = await record_observation(
            session, rt.outbox, app, body, actor.subject, datetime.now(UTC)
        )
    if not out.created:
        response.status_code = status.HTTP_200_OK
    return out
