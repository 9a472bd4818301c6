"""HTTP routes of the cmdb: parse, call a handler or view, answer.

Who may read what: every read (items, specs, history, change sets, search, topology, service
discovery) is open to any caller inside the platform network, without a token; the CMDB holds
inventory and declared specs, never secrets, and the other services and Prometheus read it
anonymously. Put the service behind the platform's network boundary, not on the internet.

Who may write what (a bearer token is required for every write, else 401):
- regions, zones, pools and hosts: scope `infra` or `admin`;
- applications, their specs, instances and their relations: scope `team:<owner_team>` of the
  owning application (both the old and the new owner when ownership moves) or `admin`;
- reverting a change set: the same scopes for every item the revert touches;
- an import: the same scopes per row (rows the token does not cover are reported as errors;
  403 when they are its only errors, 422 when some rows are also bad).
Anything else is 403. The token's subject is the actor of every revision it writes (at most 300
characters, else 400); changes made because of an event record `event:<source>` as actor and the
event id as cause. A NUL character in a path, a query or a body is refused (400, or 422 with its
place in a body): PostgreSQL can neither store nor compare it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import AwareDatetime

from cmdb import handlers, importer, views
from cmdb.config import Settings
from cmdb.domain import AttributeSchema, FailureScope, Selector, SelectorError, parse_selector
from cmdb.errors import BadRequest, NotFound
from cmdb.reads import read_connection, read_pool, reads
from cmdb.schemas import (
    COLLECTIONS,
    KINDS,
    ChangeSetOut,
    HistoryOut,
    ImportResult,
    ItemPage,
    SpecOut,
    WriteResult,
)
from ooda.auth import Actor, AuthenticatedActor
from ooda.problems import errors
from ooda.service import AppIdPath, Runtime

ACTOR_MAX_LENGTH = 300
"""The longest token subject the history keeps as actor (`change_sets.actor`, `revisions.actor`)."""


def _no_nul(request: Request) -> None:
    """400 for a NUL character in the path or the query: PostgreSQL can neither store nor
    compare one, so it would otherwise fail deep in a query."""
    if "\x00" in request.scope["path"] or any(
        "\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()
    ):
        raise BadRequest("the path or the query holds a NUL character")


def _writer(actor: AuthenticatedActor) -> Actor:
    """The authenticated actor of a write, whose subject must fit the history's actor column."""
    if len(actor.subject) > ACTOR_MAX_LENGTH or "\x00" in actor.subject:
        raise BadRequest(
            f"the token's subject must be at most {ACTOR_MAX_LENGTH} characters without NUL "
            "(it is recorded as the actor of every revision)"
        )
    return actor


Writer = Annotated[Actor, Depends(_writer)]

# Any read may meet a malformed selector, filter or cursor (400) or name an unknown item (404);
# any write a concurrent one (409).
router = APIRouter(
    prefix="/v1",
    lifespan=read_pool,
    dependencies=[Depends(_no_nul)],
    responses=errors(400, 404, 409),
)

RESERVED = frozenset({"selector", "sort", "limit", "cursor"})
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
SelectorQuery = Annotated[
    str, Query(description="label selector, e.g. `app=web,zone in (a,b),!legacy`")
]
SortQuery = Annotated[str, Query(description="field to sort by; `-field` for descending")]


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _schemas(rt: Runtime) -> dict[str, AttributeSchema]:
    settings = rt.settings
    return settings.attribute_schemas if isinstance(settings, Settings) else {}


def _selector(text: str) -> Selector:
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise BadRequest(str(exc), position=exc.position, expected=exc.expected) from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _kind(name: str) -> str:
    kind = COLLECTIONS.get(name, name)
    if kind not in KINDS:
        raise NotFound(f"unknown kind {name!r}; kinds: {', '.join(sorted(KINDS))}")
    return kind


async def _page(
    request: Request, kind: str, selector: str, sort: str, limit: int, cursor: str | None
) -> ItemPage | Response:
    page: dict[str, Any] = {
        "filters": {k: v for k, v in request.query_params.items() if k not in RESERVED},
        "selector": _selector(selector),
        "sort": sort,
        "limit": limit,
        "cursor": cursor,
    }
    async with reads(request) as session:
        if kind != "host":  # the stored JSON as it is, no parse and dump
            text = await views.list_items_json(session, kind, **page)
            return Response(text, media_type="application/json")
        items, next_cursor = await views.list_items(session, kind, **page)
        items = await views.with_allocation(session, items)
    return ItemPage(items=items, next=next_cursor)


def _collection_routes(collection: str, kind: str) -> None:
    """List, get, put and delete routes of one collection (e.g. `/v1/hosts`)."""
    tag: list[str | Enum] = [collection]

    async def list_(
        request: Request,
        selector: SelectorQuery = "",
        sort: SortQuery = "id",
        limit: Limit = 100,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> ItemPage | Response:
        return await _page(request, kind, selector, sort, limit, cursor)

    async def get(request: Request, item_id: str, as_of: AwareDatetime | None = None) -> Any:
        if as_of is None:  # the hot path: the stored JSON as it is, no parse and dump
            async with read_connection(request) as conn:
                stored = await views.live_json(conn, kind, item_id)
            return Response(stored, media_type="application/json")
        async with reads(request) as session:
            found = await views.history(session, kind, item_id, as_of)
            if found.state is None:
                raise NotFound(f"{kind} {item_id!r} did not exist at {as_of.isoformat()}")
            return found.state

    async def put(
        request: Request,
        response: Response,
        item_id: str,
        actor: Writer,
        body: Annotated[dict[str, Any], Body()],
    ) -> WriteResult:
        rt = _runtime(request)
        async with rt.sessions() as session, session.begin():
            op, item, change_set_id = await handlers.put_item(
                session, rt.outbox, actor, kind, item_id, body, _schemas(rt), _now()
            )
        if op == "create":
            response.status_code = status.HTTP_201_CREATED
        return WriteResult(item=item, op=op, change_set_id=change_set_id)

    async def delete(request: Request, item_id: str, actor: Writer) -> WriteResult:
        rt = _runtime(request)
        async with rt.sessions() as session, session.begin():
            change_set_id = await handlers.delete_item(
                session, rt.outbox, actor, kind, item_id, _now()
            )
        return WriteResult(item=None, op="delete", change_set_id=change_set_id)

    path = f"/{collection}"
    router.add_api_route(
        path, list_, methods=["GET"], tags=tag, summary=f"List {kind}s", response_model=ItemPage
    )
    router.add_api_route(
        path + "/{item_id}", get, methods=["GET"], tags=tag, summary=f"Get one {kind}"
    )
    router.add_api_route(
        path + "/{item_id}",
        put,
        methods=["PUT"],
        tags=tag,
        summary=f"Create or update a {kind} (201 created, 200 updated or unchanged)",
        response_model=WriteResult,
        responses={201: {"model": WriteResult, "description": "Created"}},
    )
    router.add_api_route(
        path + "/{item_id}",
        delete,
        methods=["DELETE"],
        tags=tag,
        summary=f"Delete a {kind}",
        response_model=WriteResult,
    )


# The collections' routes come first, the most numerous items first: item reads are the hottest
# requests, and every request is matched against the routes in order (by the router, and again by
# the request metrics). None of them can shadow a route below: an `{item_id}` never holds a `/`,
# and no collection is named like a fixed segment (`search`, `import`, `history`, ...).
_BY_VOLUME = ("instances", "hosts", "apps", "relations", "pools", "zones", "regions")
for _collection in sorted(COLLECTIONS, key=_BY_VOLUME.index):
    _collection_routes(_collection, COLLECTIONS[_collection])


@router.get("/apps/{app}/spec", tags=["apps"], summary="The application's current spec")
async def get_spec(request: Request, app: AppIdPath) -> dict[str, Any]:
    async with reads(request) as session:
        try:
            return await views.get_live(session, "application_spec", app)
        except NotFound:
            raise NotFound(f"application {app!r} has no spec") from None


@router.put(
    "/apps/{app}/spec",
    tags=["apps"],
    summary="Declare the application's spec: a new revision and one change-requested",
    response_model=SpecOut,
    responses={201: {"model": SpecOut, "description": "A new revision"}},
)
async def put_spec(
    request: Request,
    response: Response,
    app: AppIdPath,
    actor: Writer,
    body: Annotated[dict[str, Any], Body()],
) -> SpecOut:
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        spec, created, change_set_id, request_id = await handlers.put_spec(
            session, rt.outbox, actor, app, body, _schemas(rt), _now()
        )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return SpecOut(
        spec=spec,
        revision=spec["revision"],
        created=created,
        change_set_id=change_set_id,
        change_request_id=request_id,
    )


@router.get(
    "/apps/{app}/spec/revisions", tags=["apps"], summary="Every spec revision, newest first"
)
async def get_spec_revisions(request: Request, app: AppIdPath) -> list[dict[str, Any]]:
    async with reads(request) as session:
        return await views.spec_history(session, app)


@router.get("/apps/{app}/dependents", tags=["topology"], summary="What depends on this app")
async def get_dependents(request: Request, app: AppIdPath) -> list[dict[str, Any]]:
    async with reads(request) as session:
        return await views.app_dependents(session, app)


@router.get("/hosts/{host_id}/instances", tags=["topology"], summary="What runs on this host")
async def get_host_instances(request: Request, host_id: str) -> list[dict[str, Any]]:
    async with reads(request) as session:
        return await views.host_instances(session, host_id)


@router.get(
    "/blast-radius", tags=["topology"], summary="Impact of losing a zone or pool, per application"
)
async def get_blast_radius(
    request: Request, zone: str | None = None, pool: str | None = None
) -> dict[str, Any]:
    if (zone is None) == (pool is None):
        raise BadRequest("give exactly one of ?zone= or ?pool=")
    scope = FailureScope(kind="zone", id=zone) if zone else FailureScope(kind="pool", id=str(pool))
    # In a transaction of the runtime's: the reads set a planner option for their duration.
    async with _runtime(request).sessions() as session:
        return await views.blast(session, scope)


@router.get("/sd/prometheus", tags=["discovery"], summary="Prometheus HTTP service discovery")
async def get_sd(request: Request) -> list[dict[str, Any]]:
    async with reads(request) as session:
        return await views.prometheus_targets(session)


@router.get(
    "/history/{kind}/{item_id}",
    tags=["history"],
    summary="An item's revisions, and its state now or as of a past time",
    response_model=HistoryOut,
)
async def get_history(
    request: Request, kind: str, item_id: str, as_of: AwareDatetime | None = None
) -> HistoryOut:
    async with reads(request) as session:
        return await views.history(session, _kind(kind), item_id, as_of)


@router.get(
    "/change-sets/{change_set_id}",
    tags=["history"],
    summary="One change set and its revisions",
    response_model=ChangeSetOut,
)
async def get_change_set(request: Request, change_set_id: str) -> ChangeSetOut:
    async with reads(request) as session:
        return await views.change_set(session, change_set_id)


@router.post(
    "/change-sets/{change_set_id}/revert",
    tags=["history"],
    summary="Revert a change set as a new change set (409 over later changes unless force)",
    response_model=ChangeSetOut,
    status_code=status.HTTP_201_CREATED,
)
async def revert(
    request: Request, change_set_id: str, actor: Writer, force: bool = False
) -> ChangeSetOut:
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        change_set = await handlers.revert_change_set(
            session, rt.outbox, actor, change_set_id, force, _now()
        )
    async with rt.sessions() as session:
        return await views.change_set(session, change_set.id)


@router.get("/search", tags=["search"], summary="Items of any kind containing the text")
async def get_search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    kind: Annotated[list[str] | None, Query(description="restrict to these kinds")] = None,
    limit: Limit = 100,
) -> ItemPage:
    kinds = [_kind(k) for k in kind or []]
    async with reads(request) as session:
        found = await views.search(session, q, kinds, limit)
    return ItemPage(items=found, next=None)


@router.post(
    "/import",
    tags=["import"],
    summary="Import items from JSON lines or CSV (all-or-nothing unless atomic=false)",
    response_model=ImportResult,
    responses={
        403: {
            "model": ImportResult,
            "description": "rows the token may not change, and no other error; nothing changed",
        },
        422: {"model": ImportResult, "description": "bad rows; nothing was changed"},
    },
)
async def post_import(
    request: Request,
    response: Response,
    actor: Writer,
    format: Annotated[str | None, Query(pattern="^(jsonl|csv)$")] = None,
    dry_run: bool = False,
    atomic: bool = True,
) -> ImportResult:
    content_type = request.headers.get("content-type", "")
    fmt = format or ("csv" if "csv" in content_type else "jsonl")
    try:
        content = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the import is not UTF-8 text: {exc}") from exc
    rows = importer.parse_rows(content, fmt)
    rt = _runtime(request)
    async with rt.sessions() as session, session.begin():
        outcome = await importer.import_items(
            session,
            rt.outbox,
            actor,
            rows,
            _schemas(rt),
            dry_run=dry_run,
            atomic=atomic,
            at=_now(),
        )
    if outcome.errors and not outcome.applied:
        # Only refusals: the rows are fine, the token is not (a wrong team's import is a 403).
        only_refused = outcome.refused == len(outcome.errors)
        response.status_code = (
            status.HTTP_403_FORBIDDEN if only_refused else status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    return ImportResult(
        dry_run=dry_run,
        applied=outcome.applied,
        rows=outcome.rows,
        created=outcome.created,
        updated=outcome.updated,
        unchanged=outcome.unchanged,
        change_set_id=outcome.change_set_id,
        errors=outcome.errors,
    )
