"""Every service answers bad request bodies with a 422 naming the field, NaN included."""

from __future__ import annotations

import json
import math
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from ooda import problems
from ooda.auth import Actor, current_actor
from ooda.problems import validation_error

pytestmark = pytest.mark.unit


class Body(BaseModel):
    rate: int


async def test_a_nan_in_a_body_is_a_422_with_its_path_not_a_500() -> None:
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.post("/things")
    async def things(body: Body) -> dict[str, int]:
        return {"rate": body.rate}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://svc")
    response = await client.post(
        "/things",
        content=json.dumps({"rate": math.nan}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "rate"] and "input" not in problem
    fine = await client.post("/things", json={"rate": "many"})
    assert fine.status_code == 422 and fine.json()["detail"][0]["input"] == "many"


async def test_a_body_that_is_not_utf8_is_a_422_not_a_500() -> None:
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.put("/things")
    async def things(body: Body) -> dict[str, int]:
        return {"rate": body.rate}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://svc")
    response = await client.put("/things", content=b"\xbf\x01")  # no content-type, not UTF-8
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body"]


def _app_with_shared_errors() -> FastAPI:
    from fastapi import HTTPException

    app = FastAPI()
    problems.install(app)

    @app.get("/sentence")
    async def sentence() -> None:
        raise HTTPException(422, "end must be after start")

    @app.get("/untyped")
    async def untyped() -> None:
        raise HTTPException(422, [{"loc": ["body", "x"], "msg": "repeats x"}])

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "no such thing")

    return app


async def test_every_422_has_fastapis_shape_whoever_raised_it_and_other_errors_keep_theirs() -> (
    None
):
    transport = httpx.ASGITransport(app=_app_with_shared_errors())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        sentence = await client.get("/sentence")
        untyped = await client.get("/untyped")
        missing = await client.get("/missing")
    assert sentence.json() == {
        "detail": [{"loc": [], "msg": "end must be after start", "type": "value_error"}]
    }
    assert untyped.json() == {
        "detail": [{"loc": ["body", "x"], "msg": "repeats x", "type": "value_error"}]
    }
    assert (missing.status_code, missing.json()) == (404, {"detail": "no such thing"})


def test_a_value_the_database_refuses_is_recognised_behind_the_drivers_wrapping() -> None:
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    from ooda.problems import refused_value

    nul = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")
    wrapped = DBAPIError("SELECT 1", {}, Exception("adapted"))
    wrapped.orig.__cause__ = nul  # type: ignore[union-attr]
    assert refused_value(wrapped) is nul
    overflow = asyncpg.exceptions._base.DataError("value out of int32 range")
    assert refused_value(overflow) is overflow
    assert refused_value(DBAPIError("SELECT 1", {}, ConnectionError("down"))) is None


def test_the_openapi_document_lists_each_operations_error_answers() -> None:
    app = FastAPI()

    @app.put("/things/{thing}", responses=problems.errors(409))
    async def put_thing(
        thing: str, body: Body, actor: Annotated[Actor, Depends(current_actor)]
    ) -> None: ...

    @app.get("/things")
    async def list_things() -> None: ...

    problems.document_errors(app)
    paths = app.openapi()["paths"]
    assert sorted(paths["/things/{thing}"]["put"]["responses"]) == [
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "422",
        "503",
    ]
    assert sorted(paths["/things"]["get"]["responses"]) == ["200", "422", "503"]
    invalid = paths["/things"]["get"]["responses"]["422"]["content"]["application/json"]
    assert invalid["schema"] == {"$ref": "#/components/schemas/InvalidOut"}
    schemas = app.openapi()["components"]["schemas"]
    assert schemas["ProblemOut"]["required"] == ["loc", "msg", "type"]
