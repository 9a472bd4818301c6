"""Error answers every service shares: their bodies, their schemas in the OpenAPI document, and
the safety net that turns a value the database refuses into a 422 instead of a 500.

Every 422 has FastAPI's shape (`{"detail": [{"loc", "msg", "type"}]}`), whoever raised it; every
other error is `{"detail": ...}`. Each operation documents the errors it can answer: 422 and 503
everywhere, 401 and 403 where a token is required, 404 where the path names something, 400 where
a body is read (one that does not decode), and whatever else a route declares with
`responses=errors(409, ...)`."""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    """An error: `detail` says what went wrong (a sentence, or structured context)."""

    detail: str | dict[str, Any] | list[Any]


class ProblemOut(BaseModel):
    """One invalid input: where it is (`loc`), what is wrong (`msg`) and its kind (`type`)."""

    loc: list[str | int]
    msg: str
    type: str


class InvalidOut(BaseModel):
    """A refused input: every problem with its location."""

    detail: list[ProblemOut]


_DESCRIPTIONS = {
    400: "Malformed query (a bad selector, filter or cursor)",
    401: "Missing or invalid bearer token",
    403: "The token does not cover this action",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Invalid input",
    502: "A service this one depends on answered wrongly",
    503: "A dependency (database, another service) is unavailable; retry",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers these error statuses too."""
    return {
        status: {
            "model": InvalidOut if status == 422 else ErrorOut,
            "description": _DESCRIPTIONS.get(status, "Error"),
        }
        for status in statuses
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema with its definitions inlined, for an `openapi_extra` body (where
    a `#/$defs/...` reference would point nowhere)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def problem(loc: list[str | int] | tuple[str | int, ...], msg: str) -> dict[str, Any]:
    """One problem of a 422 answer."""
    return {"loc": list(loc), "msg": msg, "type": "value_error"}


def _problems(detail: Any) -> list[dict[str, Any]]:
    """A 422's detail in FastAPI's shape, whatever shape it was raised with."""
    if isinstance(detail, list):
        found = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                found.append(
                    {
                        **item,
                        "loc": list(item.get("loc") or []),
                        "msg": str(item["msg"]),
                        "type": str(item.get("type") or "value_error"),
                    }
                )
            else:
                found.append(problem([], str(item)))
        return found
    return [problem([], detail if isinstance(detail, str) else json.dumps(detail, default=str))]


async def http_error(request: Request, exc: Exception) -> Response:
    """An HTTPException as JSON; a 422 always in FastAPI's shape."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304):  # answers that have no body
        return Response(status_code=exc.status_code, headers=getattr(exc, "headers", None))
    detail: Any = exc.detail
    if exc.status_code == 422:
        detail = _problems(detail)
    return JSONResponse(
        {"detail": jsonable_encoder(detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _spellable(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error as JSON can carry it: an input of NaN or Infinity is left out."""
    try:
        json.dumps(error, allow_nan=False)
    except ValueError:
        return {k: v for k, v in error.items() if k not in ("input", "ctx")}
    return error


def _text(value: Any) -> Any:
    """`value` with every bytes in it as text (undecodable bytes replaced), so it can be echoed."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {key: _text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_text(item) for item in value]
    return value


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each problem's path (as FastAPI does), even for a body with NaN in it or one
    that is not UTF-8 (whose echo FastAPI's own handler cannot render, answering 500)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [_spellable(error) for error in jsonable_encoder(_text(errors))]
    return JSONResponse(status_code=422, content={"detail": detail})


def refused_value(exc: BaseException) -> BaseException | None:
    """The database's refusal of a value (out of its column's range, a NUL in text, too long for
    its column) behind `exc`, or None when `exc` is another kind of failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # asyncpg.DataError: PostgreSQL's class 22; asyncpg's own DataError (an InterfaceError
        # and a ValueError): an argument that does not encode (an int past int32 or int64).
        if isinstance(current, asyncpg.DataError | asyncpg.exceptions._base.DataError):
            return current
        current = getattr(current, "orig", None) or current.__cause__
    return None


def refused_value_answer(exc: BaseException) -> JSONResponse:
    """422 for a value the database refused (nothing was applied: its transaction rolled back)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JSONResponse(
        {"detail": [problem([], f"a value does not fit its field: {reason}")]}, status_code=422
    )


def document_errors(app: FastAPI, unguarded: tuple[str, ...] = ()) -> None:
    """Make `app`'s OpenAPI document list the error answers of every operation.

    `unguarded` paths (probes, scrapes) touch no database and get nothing added."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorOut, ProblemOut, InvalidOut):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            model_schema.pop("$defs", None)
            components[model.__name__] = model_schema
        for path, operations in schema.get("paths", {}).items():
            if path in unguarded:
                continue
            for operation in operations.values():
                statuses = [422, 503]
                if operation.get("security"):
                    statuses += [401, 403]
                if "{" in path:
                    statuses.append(404)
                if "requestBody" in operation:
                    statuses.append(400)  # a body that does not even decode
                responses = operation.setdefault("responses", {})
                for status in statuses:
                    responses.setdefault(str(status), _response(status))
                responses["422"] = _invalid(responses["422"])
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _invalid(declared: dict[str, Any]) -> dict[str, Any]:
    """The 422 answer: FastAPI's shape (its own HTTPValidationError schema says the same, less
    strictly), or either that or what the route declared for its own 422 (an import's report)."""
    invalid = _response(422)
    schema = declared.get("content", {}).get("application/json", {}).get("schema", {})
    plain = str(schema.get("$ref", "")).endswith(("/HTTPValidationError", "/InvalidOut"))
    if schema and not plain:
        either = {"anyOf": [schema, invalid["content"]["application/json"]["schema"]]}
        invalid = {
            "description": declared.get("description", invalid["description"]),
            "content": {"application/json": {"schema": either}},
        }
    return invalid


def _response(status: int) -> dict[str, Any]:
    model = InvalidOut if status == 422 else ErrorOut
    return {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def install(app: FastAPI) -> None:
    """Register the shared error answers on `app`."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
