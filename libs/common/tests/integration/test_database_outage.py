"""A request that fails while the database is down is a 503 to retry, not a 500."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.requests import Request

from ooda.db import session_factory
from ooda.service import database_error
from ooda.testing import Infra, free_port

pytestmark = pytest.mark.integration


def request_against(url: str) -> Request:
    engine = create_async_engine(url)
    app = SimpleNamespace(
        state=SimpleNamespace(runtime=SimpleNamespace(sessions=session_factory(engine)))
    )
    return Request(
        {"type": "http", "method": "GET", "path": "/v1/things", "app": app, "headers": []}
    )


FAILURE = DBAPIError("SELECT 1", {}, ConnectionResetError("connection reset by peer"))


async def test_a_database_that_does_not_answer_makes_a_503_with_retry_after() -> None:
    down = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{free_port()}/none"
    response = await database_error(request_against(down), FAILURE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert b"database is unavailable" in response.body


async def test_a_database_error_while_the_database_answers_is_a_500_without_details(
    infra: Infra,
) -> None:
    response = await database_error(request_against(infra.database_url("ooda_test")), FAILURE)
    assert response.status_code == 500
    assert response.body == b'{"detail":"internal error"}'
