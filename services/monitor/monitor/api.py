"""HTTP routes of the monitor: parse, call a handler, answer."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    Body,
    Depends,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from pydantic import ValidationError

from monitor.config import Settings
from monitor.domain import ExpositionError, Metric, parse_exposition
from monitor.handlers import (
    AnnouncedElsewhere,
    announce_targets,
    record_observation,
    replace_rules,
    store_push,
    withdraw_targets,
)
from monitor.loops import Monitor
from monitor.owners import authorize
from monitor.rules import expand, rule_from_spec
from monitor.schemas import (
    INSTANCE_ID_PATTERN,
    AlertOut,
    AnnouncedOut,
    AnnounceIn,
    AuditOut,
    ObservationIn,
    ObservationOut,
    PushIn,
    PushOut,
    RangeOut,
    RulesIn,
    RulesOut,
    SampleIn,
    TargetOut,
    WithdrawIn,
    WithdrawnOut,
)
from monitor.views import (
    list_alerts,
    list_announced,
    list_audit,
    list_targets,
    metric_range,
    rules_of,
)
from ooda.auth import Actor, requires
from ooda.bounds import NO_NUL, Moment, PositiveSeconds
from ooda.events.contracts import APP_ID_PATTERN
from ooda.problems import errors, inline_schema
from ooda.service import AppIdPath as AppId
from ooda.service import Runtime

router = APIRouter(prefix="/v1")
_APP_ID = re.compile(APP_ID_PATTERN)
_MAX_POINTS = 11_000

AppQuery = Annotated[
    str | None, Query(pattern=APP_ID_PATTERN, max_length=128, description="only this application")
]


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def _for_owner(request: Request, actor: Actor, app: str, capability: str) -> None:
    """403 unless `actor` holds `capability` as the owner team of `app` in the CMDB (or admin)."""
    await authorize(request.app.state.owners, actor, app, capability)


@router.post(
    "/apps/{app}/observations",
    response_model=ObservationOut,
    status_code=status.HTTP_201_CREATED,
    tags=["observations"],
    summary="Record one window of an application's aggregates and publish metric-observed",
    responses={200: {"model": ObservationOut, "description": "This window was already recorded"}},
)
async def post_observation(
    app: AppId,
    body: ObservationIn,
    request: Request,
    response: Response,
    actor: Annotated[Actor, Depends(requires("metrics:push"))],
) -> ObservationOut:
    await _for_owner(request, actor, app, "metrics:push")
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        out = await record_observation(
            session, rt.outbox, app, body, actor.subject, datetime.now(UTC)
        )
    if not out.created:
        response.status_code = status.HTTP_200_OK
    return out


@router.get(
    "/targets",
    response_model=list[TargetOut],
    tags=["targets"],
    summary="Every discovered target and the state of its last scrape",
)
async def get_targets(request: Request, app: AppQuery = None) -> list[TargetOut]:
    async with _runtime(request).sessions() as session:
        found = await list_targets(session)
    return [t for t in found if app is None or t.app == app]


@router.post(
    "/apps/{app}/announced-targets",
    response_model=AnnouncedOut,
    tags=["targets"],
    summary="Announce instances to scrape before the CMDB lists them (a rollout's new batch)",
    responses=errors(409),
)
async def post_announced_targets(
    app: AppId,
    body: AnnounceIn,
    request: Request,
    actor: Annotated[Actor, Depends(requires("deploy"))],
) -> AnnouncedOut:
    problems = _repeated(body)
    if problems:
        raise HTTPException(422, problems)
    rt = _runtime(request)
    monitor: Monitor = request.app.state.monitor
    now = datetime.now(UTC)
    try:
        async with rt.sessions() as session, session.begin():
            await announce_targets(session, app, body, actor.subject, now)
    except AnnouncedElsewhere as exc:
        raise HTTPException(409, str(exc)) from exc
    monitor.request_refresh()
    async with rt.sessions() as session:
        found = await list_announced(session, app, now)
    return AnnouncedOut(app=app, scrape_interval_s=monitor.step_s, targets=found)


def _repeated(body: AnnounceIn) -> list[dict[str, object]]:
    """422 details (with field paths) for instance ids or scrape URLs given more than once."""
    problems: list[dict[str, object]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, target in enumerate(body.targets):
        keys = (
            ("instance_id", target.instance_id),
            ("endpoint", target.endpoint + target.metrics_path),
        )
        for field, key in keys:
            first = seen.setdefault((field, key), index)
            if first != index:
                problems.append(
                    {
                        "loc": ["body", "targets", index, field],
                        "msg": f"repeats the {field} of targets[{first}]",
                        "type": "value_error",
                    }
                )
    return problems


@router.get(
    "/apps/{app}/announced-targets",
    response_model=AnnouncedOut,
    tags=["targets"],
    summary="An application's announced instances that have not expired",
)
async def get_announced_targets(app: AppId, request: Request) -> AnnouncedOut:
    monitor: Monitor = request.app.state.monitor
    async with _runtime(request).sessions() as session:
        found = await list_announced(session, app, datetime.now(UTC))
    return AnnouncedOut(app=app, scrape_interval_s=monitor.step_s, targets=found)


@router.delete(
    "/apps/{app}/announced-targets/{instance_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["targets"],
    summary="Withdraw one announced instance (it is no longer scraped unless the CMDB lists it)",
)
async def delete_announced_target(
    app: AppId,
    instance_id: Annotated[str, Path(pattern=INSTANCE_ID_PATTERN, max_length=200)],
    request: Request,
    actor: Annotated[Actor, Depends(requires("deploy"))],
) -> Response:
    if not await _withdraw(request, app, [instance_id], actor.subject):
        raise HTTPException(404, f"{instance_id} is not announced for {app}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/apps/{app}/announced-targets/withdraw",
    response_model=WithdrawnOut,
    tags=["targets"],
    summary="Withdraw announced instances that stopped (ids not announced are ignored)",
)
async def post_withdraw_targets(
    app: AppId,
    body: WithdrawIn,
    request: Request,
    actor: Annotated[Actor, Depends(requires("deploy"))],
) -> WithdrawnOut:
    withdrawn = await _withdraw(request, app, body.instance_ids, actor.subject)
    return WithdrawnOut(app=app, withdrawn=withdrawn)


async def _withdraw(request: Request, app: str, instance_ids: list[str], actor: str) -> list[str]:
    """Forget these announced instances of `app` and rescrape without them; those it had."""
    async with _runtime(request).sessions() as session, session.begin():
        found = await withdraw_targets(session, app, instance_ids, actor)
    if found:
        request.app.state.monitor.request_refresh()
    return found


@router.get(
    "/apps/{app}/metrics",
    response_model=RangeOut,
    tags=["observations"],
    summary="One aggregate of an application over a time range, one point per step",
)
async def get_metric_range(
    app: AppId,
    request: Request,
    metric: Metric,
    start: Annotated[Moment, Query()],
    end: Annotated[Moment | None, Query()] = None,
    step: Annotated[
        PositiveSeconds | None, Query(description="seconds; default the interval")
    ] = None,
) -> RangeOut:
    monitor: Monitor = request.app.state.monitor
    now = datetime.now(UTC)
    end = end or now
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise HTTPException(422, f"{name} needs a timezone (e.g. 'Z')")
    if end <= start:
        raise HTTPException(422, "end must be after start")
    step_delta = timedelta(seconds=step) if step else monitor.step
    if step_delta < monitor.step or step_delta % monitor.step:
        raise HTTPException(422, f"step must be a multiple of the interval ({monitor.step_s:g}s)")
    if (end - start) / step_delta > _MAX_POINTS:
        raise HTTPException(422, f"more than {_MAX_POINTS} points: use a larger step")
    async with _runtime(request).sessions() as session:
        return await metric_range(session, app, metric, start, end, step_delta, monitor.policy, now)


_PUSH_EXAMPLE = {
    "app": "payments",
    "instance": "batch-7",
    "samples": [{"name": "http_requests_total", "labels": {"status": "200"}, "value": 42}],
}


@router.post(
    "/push",
    response_model=PushOut,
    status_code=status.HTTP_201_CREATED,
    tags=["push"],
    summary="Push samples (Prometheus text with ?app=&instance=, or JSON) for an instance",
    responses=errors(413, 415),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": inline_schema(PushIn),
                    "example": _PUSH_EXAMPLE,
                },
                "text/plain": {"schema": {"type": "string"}},
            }
        }
    },
)
async def push(
    request: Request,
    actor: Annotated[Actor, Depends(requires("metrics:push"))],
    app: AppQuery = None,
    instance: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="with a text body")
    ] = None,
) -> PushOut:
    settings: Settings = request.app.state.settings
    body = await request.body()
    if len(body) > settings.scrape_max_bytes:
        raise HTTPException(413, f"push larger than {settings.scrape_max_bytes} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("", "text/plain"):
        parsed = _push_from_text(body, app, instance, settings.series_limit)
    elif kind == "application/json":
        try:
            parsed = PushIn.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(
                422, exc.errors(include_url=False, include_context=False, include_input=False)
            ) from exc
        if len(parsed.samples) > settings.series_limit:
            raise HTTPException(422, f"more than {settings.series_limit} samples in one push")
    else:
        raise HTTPException(415, f"content-type {kind!r}: use text/plain or application/json")
    await _for_owner(request, actor, parsed.app, "metrics:push")
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        return await store_push(session, parsed, actor.subject, datetime.now(UTC))


def _push_from_text(body: bytes, app: str | None, instance: str | None, limit: int) -> PushIn:
    if not app or not _APP_ID.match(app) or len(app) > 128:
        raise HTTPException(422, "query parameter app: a valid application id is required")
    if not instance or len(instance) > 200:
        raise HTTPException(422, "query parameter instance: required, at most 200 characters")
    try:
        exposition = parse_exposition(body.decode("utf-8"), limit)
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"body is not UTF-8: {exc}") from exc
    except ExpositionError as exc:
        raise HTTPException(422, str(exc)) from exc
    if exposition.dropped:
        raise HTTPException(422, f"more than {limit} series in one push")
    if not exposition.samples:
        raise HTTPException(422, "no samples in the pushed text")
    samples = [
        SampleIn(name=name, labels=dict(labels), value=value)
        for (name, labels), value in exposition.samples.items()
        if value == value and abs(value) != float("inf")
    ]
    return PushIn(app=app, instance=instance, samples=samples)


@router.put(
    "/apps/{app}/alert-rules",
    response_model=RulesOut,
    tags=["alerts"],
    summary="Replace an application's alert rules (thresholds, burn rates, SLOs)",
)
async def put_rules(
    app: AppId,
    body: Annotated[RulesIn, Body()],
    request: Request,
    actor: Annotated[Actor, Depends(requires("alerts:write"))],
) -> RulesOut:
    await _for_owner(request, actor, app, "alerts:write")
    specs = [spec for rule in body.rules for spec in expand(rule, app)]
    names = [spec["name"] for spec in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise HTTPException(422, f"rule names must be unique; repeated: {', '.join(duplicated)}")
    for spec in specs:
        try:
            rule_from_spec(app, spec)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        await replace_rules(session, app, specs, actor.subject)
    async with rt.sessions() as session:
        return await rules_of(session, app)


@router.get("/apps/{app}/alert-rules", response_model=RulesOut, tags=["alerts"])
async def get_rules(app: AppId, request: Request) -> RulesOut:
    async with _runtime(request).sessions() as session:
        return await rules_of(session, app)


@router.delete("/apps/{app}/alert-rules", status_code=status.HTTP_204_NO_CONTENT, tags=["alerts"])
async def delete_rules(
    app: AppId,
    request: Request,
    actor: Annotated[Actor, Depends(requires("alerts:write"))],
) -> Response:
    await _for_owner(request, actor, app, "alerts:write")
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        await replace_rules(session, app, [], actor.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/apps/{app}/audit",
    response_model=list[AuditOut],
    tags=["alerts"],
    summary="Who replaced the application's alert rules or withdrew its targets, newest first",
)
async def get_audit(
    app: AppId, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditOut]:
    async with _runtime(request).sessions() as session:
        return await list_audit(session, app, limit)


@router.get("/alerts", response_model=list[AlertOut], tags=["alerts"])
async def get_alerts(
    request: Request,
    state: Literal["firing", "resolved"] | None = None,
    app: AppQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    async with _runtime(request).sessions() as session:
        return await list_alerts(session, state, app, limit)
