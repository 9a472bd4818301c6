"""HTTP routes of the pipeline: changes and their controls, freezes, instances, artifacts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ooda.auth import ADMIN, Actor, current_actor
from ooda.bounds import NO_NUL
from ooda.events.contracts import APP_ID_PATTERN
from ooda.problems import errors
from ooda.service import AppIdPath as AppId
from ooda.service import Runtime
from pipeline.artifact_handlers import (
    CmdbUnreachable,
    QuotaExceeded,
    collect_unused_artifacts,
    register_upload,
)
from pipeline.artifacts import ArtifactError, normalise_digest
from pipeline.bootstrap import Components
from pipeline.cmdb import UnknownApplication
from pipeline.domain import (
    BatchSpec,
    Cause,
    CauseKind,
    ChangeKind,
    DomainError,
    IllegalTransition,
    Placement,
    Target,
)
from pipeline.executor import utcnow
from pipeline.handlers import (
    Action,
    NotFound,
    RequestChange,
    act_on_change,
    artifact_map,
    audit,
    change_row,
    current_freeze,
    lift_freeze,
    request_change,
    set_freeze,
    set_windows,
    unpin,
)
from pipeline.metrics import ARTIFACT_UPLOADS_REFUSED
from pipeline.schemas import (
    SHA256_PATTERN,
    ActionIn,
    ArtifactOut,
    AuditOut,
    ChangeIn,
    ChangeList,
    ChangeOut,
    CollectedOut,
    FreezeIn,
    FreezeOut,
    InstanceOut,
    WindowsIn,
    WindowsOut,
)
from pipeline.store import change_windows
from pipeline.views import artifact_out, change_out, list_audit, list_changes, list_instances

router = APIRouter(prefix="/v1")

ActorDep = Annotated[Actor, Depends(current_actor)]
ChangeId = Annotated[str, Path(max_length=200, pattern=NO_NUL)]


def _rt(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _parts(request: Request) -> Components:
    parts: Components = request.app.state.pipeline
    return parts


async def authorize(parts: Components, actor: Actor, app: str) -> None:
    """Let the actor change `app` with `release`, `admin` or its owner's `team:` scope (404/403)."""
    try:
        owner = await parts.cmdb.owner(app)
    except UnknownApplication:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown application {app!r}") from None
    except httpx.HTTPError as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the CMDB is unreachable: {error}"
        ) from None
    if actor.has("release") or (owner is not None and actor.has(f"team:{owner}")):
        return
    needed = f"'release' or 'team:{owner}'" if owner else "'release'"
    raise HTTPException(
        status.HTTP_403_FORBIDDEN, f"actor {actor.subject!r} needs scope {needed} to change {app}"
    )


@router.post(
    "/changes",
    response_model=ChangeOut,
    status_code=status.HTTP_201_CREATED,
    tags=["changes"],
    summary="Ask for a change; repeating an idempotency key returns the existing change (200)",
    responses={
        200: {"model": ChangeOut, "description": "The change this idempotency key asked for"},
        **errors(404, 409),
    },
)
async def post_change(
    body: ChangeIn, request: Request, response: Response, actor: ActorDep
) -> ChangeOut:
    rt, parts = _rt(request), _parts(request)
    await authorize(parts, actor, body.app)
    if body.emergency and not actor.has(ADMIN):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only an admin may mark a change as an emergency"
        )
    try:
        batch = (
            body.batch.to_domain()
            if body.batch
            else BatchSpec(percent=parts.settings.default_batch_percent)
        )
        target = Target(
            version=body.target.version,
            replicas=body.target.replicas,
            revision=body.target.revision,
            placement=Placement(
                pools=frozenset({body.target.to_pool} if body.target.to_pool else ()),
                zones=frozenset({body.target.to_zone} if body.target.to_zone else ()),
            ),
        )
        artifact = normalise_digest(body.target.artifact) if body.target.artifact else None
    except (ValidationError, ValueError) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    async with rt.sessions() as session, session.begin():
        if body.kind in ("deploy", "rollback") and body.target.version:
            await _check_version(session, parts, body.app, body.target.version, artifact)
        cmd = RequestChange(
            app=body.app,
            kind=ChangeKind(body.kind),
            request_id=body.idempotency_key,
            target=target,
            batch=batch,
            actor=actor.subject,
            cause=Cause(kind=CauseKind.REQUEST, id=body.idempotency_key),
            cause_text=f"request {body.idempotency_key} by {actor.subject}",
            artifact=artifact,
            reason=body.reason,
            emergency=body.emergency,
        )
        try:
            row, created = await request_change(session, rt.outbox, cmd, utcnow())
        except DomainError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    parts.wake()
    return change_out(row)


async def _check_version(
    session: AsyncSession, parts: Components, app: str, version: str, artifact: str | None
) -> None:
    if artifact is not None:
        if not await asyncio.to_thread(parts.artifacts.path(artifact).exists):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"artifact {artifact} is not in the artifact store; upload it to /v1/artifacts",
            )
        return
    if version in await artifact_map(session, app):
        return
    try:
        spec = await parts.cmdb.spec(app)
    except (UnknownApplication, httpx.HTTPError):
        spec = None
    if spec is None or spec.version != version or not spec.artifact:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown version {version!r} of {app}: give its artifact digest in target.artifact",
        )


@router.get("/changes/{change_id}", response_model=ChangeOut, tags=["changes"], summary="A change")
async def get_change(change_id: ChangeId, request: Request) -> ChangeOut:
    async with _rt(request).sessions() as session:
        row = await change_row(session, change_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no change {change_id}")
    return change_out(row)


@router.get(
    "/changes", response_model=ChangeList, tags=["changes"], summary="Changes, newest first"
)
async def get_changes(
    request: Request,
    app: Annotated[str | None, Query(pattern=APP_ID_PATTERN, max_length=128)] = None,
    state: Annotated[str | None, Query(pattern=NO_NUL, max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangeList:
    async with _rt(request).sessions() as session:
        return ChangeList(items=await list_changes(session, app, state, limit))


@router.post(
    "/changes/{change_id}/{action}",
    response_model=ChangeOut,
    tags=["changes"],
    summary="Pause, resume, abort or roll back a change",
    responses=errors(409),
)
async def change_action(
    change_id: ChangeId,
    action: Action,
    request: Request,
    actor: ActorDep,
    body: ActionIn | None = None,
) -> ChangeOut:
    rt, parts = _rt(request), _parts(request)
    async with rt.sessions() as session:
        row = await change_row(session, change_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no change {change_id}")
    await authorize(parts, actor, row["app"])
    reason = body.reason if body else ""
    try:
        async with rt.sessions() as session, session.begin():
            await act_on_change(
                session, rt.outbox, change_id, action, actor.subject, reason, utcnow()
            )
    except IllegalTransition as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    parts.wake()
    async with rt.sessions() as session:
        found = await change_row(session, change_id)
    assert found is not None
    return change_out(found)


def _require_admin(actor: Actor) -> None:
    if not actor.has(ADMIN):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"actor {actor.subject!r} is not an admin")


@router.get("/freeze", response_model=FreezeOut, tags=["freeze"], summary="The global freeze")
async def get_freeze(request: Request) -> FreezeOut:
    async with _rt(request).sessions() as session:
        freeze = await current_freeze(session)
    if freeze is None:
        return FreezeOut(frozen=False)
    return FreezeOut(frozen=True, **freeze.model_dump())


@router.put("/freeze", response_model=FreezeOut, tags=["freeze"], summary="Freeze releases (admin)")
async def put_freeze(body: FreezeIn, request: Request, actor: ActorDep) -> FreezeOut:
    _require_admin(actor)
    async with _rt(request).sessions() as session, session.begin():
        freeze = await set_freeze(session, body.reason, actor.subject, utcnow(), body.until)
    return FreezeOut(frozen=True, **freeze.model_dump())


@router.delete(
    "/freeze", response_model=FreezeOut, tags=["freeze"], summary="Lift the freeze (admin)"
)
async def delete_freeze(request: Request, actor: ActorDep) -> FreezeOut:
    _require_admin(actor)
    async with _rt(request).sessions() as session, session.begin():
        await lift_freeze(session, actor.subject, utcnow())
    _parts(request).wake()
    return FreezeOut(frozen=False)


@router.get(
    "/apps/{app}/windows", response_model=WindowsOut, tags=["freeze"], summary="Change windows"
)
async def get_windows(app: AppId, request: Request) -> WindowsOut:
    async with _rt(request).sessions() as session:
        found = (
            await session.execute(
                select(change_windows.c.windows).where(change_windows.c.app == app)
            )
        ).scalar_one_or_none()
    return WindowsOut(app=app, windows=list(found or []))


@router.put(
    "/apps/{app}/windows",
    response_model=WindowsOut,
    tags=["freeze"],
    summary="Set the application's weekly UTC change windows (empty list: any time)",
)
async def put_windows(app: AppId, body: WindowsIn, request: Request, actor: ActorDep) -> WindowsOut:
    await authorize(_parts(request), actor, app)
    try:
        async with _rt(request).sessions() as session, session.begin():
            windows = await set_windows(session, app, body.windows, actor.subject, utcnow())
    except DomainError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    _parts(request).wake()
    return WindowsOut(app=app, windows=windows)


@router.delete(
    "/apps/{app}/pin",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["changes"],
    summary="Lift the rollback pin, so automated changes may re-apply the declared state",
)
async def delete_pin(app: AppId, request: Request, actor: ActorDep) -> Response:
    await authorize(_parts(request), actor, app)
    async with _rt(request).sessions() as session, session.begin():
        await unpin(session, app, actor.subject, utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/audit",
    response_model=list[AuditOut],
    tags=["freeze"],
    summary="Who used an operator control (freeze, windows, pin, change actions), newest first",
)
async def get_audit(
    request: Request,
    app: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    async with _rt(request).sessions() as session:
        return await list_audit(session, app, limit)


@router.get(
    "/apps/{app}/instances",
    response_model=list[InstanceOut],
    tags=["instances"],
    summary="The application's instances as the pipeline runs them",
)
async def get_instances(
    app: AppId, request: Request, include_stopped: bool = False
) -> list[InstanceOut]:
    async with _rt(request).sessions() as session:
        return await list_instances(session, app, include_stopped)


TEAM_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"


def uploading_team(actor: Actor, team: str | None) -> str:
    """The team an upload counts against: the one named, else the actor's only team (422 when
    it has none or several); the actor must act for it (`team:<team>`, `release` or `admin`)."""
    if team is None:
        teams = sorted(s.removeprefix("team:") for s in actor.scopes if s.startswith("team:"))
        if not teams and not actor.has("release"):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"actor {actor.subject!r} needs a 'team:<team>' or 'release' scope to upload",
            )
        if len(teams) != 1:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "name the team whose quota the artifact counts against (?team=)",
            )
        team = teams[0]
    if not (actor.has(f"team:{team}") or actor.has("release")):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"actor {actor.subject!r} needs scope 'team:{team}' or 'release' to upload for {team}",
        )
    return team


@router.post(
    "/artifacts",
    response_model=ArtifactOut,
    status_code=status.HTTP_201_CREATED,
    tags=["artifacts"],
    summary="Upload an artifact for a team (the raw bytes as the body); its sha256 is checked if "
    "claimed; at most PIPELINE_ARTIFACT_MAX_BYTES (413), within the team's quota (409)",
    responses={
        200: {"model": ArtifactOut, "description": "Already uploaded"},
        **errors(409, 413),
    },
)
async def post_artifact(
    request: Request,
    response: Response,
    actor: ActorDep,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=NO_NUL)] = "artifact.pyz",
    sha256: Annotated[str | None, Query(pattern=SHA256_PATTERN)] = None,
    team: Annotated[
        str | None,
        Query(
            pattern=TEAM_PATTERN,
            max_length=253,
            description="whose quota it counts against; default the token's only team",
        ),
    ] = None,
) -> ArtifactOut:
    parts = _parts(request)
    owner = uploading_team(actor, team)
    try:
        claimed = normalise_digest(sha256) if sha256 is not None else None
    except ArtifactError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    # The body goes to a staging file as it arrives (the body limit stops it past the maximum).
    staged = await parts.artifacts.receive(request.stream())
    try:
        if staged.size == 0:
            ARTIFACT_UPLOADS_REFUSED.labels("empty").inc()
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the artifact is empty")
        if claimed is not None and claimed != staged.sha:
            ARTIFACT_UPLOADS_REFUSED.labels("digest").inc()
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"content has sha256 {staged.sha}, not the claimed {sha256}",
            )
        async with _rt(request).sessions() as session, session.begin():
            try:
                created = await register_upload(
                    session,
                    parts.artifacts,
                    staged,
                    name=name,
                    team=owner,
                    actor=actor.subject,
                    quota_bytes=parts.settings.artifact_quota_bytes,
                )
            except QuotaExceeded as error:
                ARTIFACT_UPLOADS_REFUSED.labels("quota").inc()
                raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
            found = await artifact_out(session, staged.sha)
    finally:
        await asyncio.to_thread(staged.path.unlink, True)  # placed (moved) or refused
    if not created:
        response.status_code = status.HTTP_200_OK
    assert found is not None
    return found


@router.post(
    "/artifacts/gc",
    response_model=CollectedOut,
    tags=["artifacts"],
    summary="Collect now the artifacts no live change or current spec uses (admin); the "
    "collector also runs every PIPELINE_ARTIFACT_GC_INTERVAL_SECONDS",
)
async def post_artifacts_gc(request: Request, actor: ActorDep) -> CollectedOut:
    _require_admin(actor)
    parts = _parts(request)
    try:
        out = await collect_unused_artifacts(
            _rt(request).sessions,
            parts.artifacts,
            parts.cmdb,
            timedelta(seconds=parts.settings.artifact_gc_grace_seconds),
            utcnow(),
        )
    except CmdbUnreachable as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"nothing collected: {error}"
        ) from None
    async with _rt(request).sessions() as session, session.begin():
        await audit(
            session,
            actor.subject,
            "artifacts-gc",
            None,
            f"{len(out.collected)} artifacts, {out.bytes} bytes, {out.orphans} stray files",
            utcnow(),
        )
    return CollectedOut(collected=out.collected, bytes=out.bytes, stray_files=out.orphans)


@router.get(
    "/artifacts/{sha256}", response_model=ArtifactOut, tags=["artifacts"], summary="An artifact"
)
async def get_artifact(
    sha256: Annotated[str, Path(pattern=SHA256_PATTERN)], request: Request
) -> ArtifactOut:
    try:
        sha = normalise_digest(sha256)
    except ArtifactError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    async with _rt(request).sessions() as session:
        found = await artifact_out(session, sha)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no artifact {sha}")
    return found
