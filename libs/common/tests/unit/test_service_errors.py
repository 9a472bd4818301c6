"""Every service answers bad request bodies with a 422 naming the field, NaN included."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

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
