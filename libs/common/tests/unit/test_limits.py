"""Request bodies are limited while they stream in: declared, chunked or lying about their length."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from ooda.limits import BODY_REFUSED, BodyLimit, RouteLimit

pytestmark = pytest.mark.unit


class Thing(BaseModel):
    name: str


def service() -> tuple[FastAPI, dict[str, int]]:
    """An app with a JSON route (default limit) and a streamed upload route (its own limit)."""
    app = FastAPI()
    seen = {"streamed": 0}

    @app.post("/things")
    async def things(body: Thing) -> dict[str, int]:
        return {"length": len(body.name)}

    @app.post("/v1/uploads/{kind}")
    async def upload(kind: str, request: Request) -> dict[str, int]:
        async for chunk in request.stream():
            seen["streamed"] += len(chunk)
        return {"size": seen["streamed"]}

    app.add_middleware(
        BodyLimit,
        service="test",
        default_bytes=1000,
        routes=[RouteLimit("POST", "/v1/uploads/{kind}", 10_000)],
    )
    return app, seen


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


class Counted:
    """A chunked body of `total` bytes, counting what the server took."""

    def __init__(self, total: int, chunk: int = 1000) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b"x" * self.chunk


def refused(service: str, route: str) -> float:
    return BODY_REFUSED.labels(service, route)._value.get()


async def test_a_route_takes_bodies_up_to_its_limit_and_refuses_one_byte_more() -> None:
    app, _ = service()
    async with client(app) as http:
        fits = await http.post("/v1/uploads/a", content=Counted(10_000))
        assert fits.status_code == 200 and fits.json() == {"size": 10_000}
        before = refused("test", "POST /v1/uploads/{kind}")
        body = Counted(10_001, chunk=1)
        over = await http.post("/v1/uploads/a", content=body)
        assert over.status_code == 413
        assert over.json() == {
            "detail": "request body larger than the 10000 bytes this route accepts"
        }
        assert refused("test", "POST /v1/uploads/{kind}") == before + 1


async def test_a_chunked_body_stops_being_read_at_the_limit() -> None:
    app, seen = service()
    body = Counted(100 * 1024 * 1024)
    async with client(app) as http:
        answer = await http.post("/v1/uploads/a", content=body)
    assert answer.status_code == 413
    assert body.sent <= 11_000 and seen["streamed"] <= 10_000


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    app, seen = service()
    body = Counted(50_000)
    async with client(app) as http:
        answer = await http.post("/v1/uploads/a", content=body, headers={"Content-Length": "50000"})
    assert answer.status_code == 413 and answer.headers["connection"] == "close"
    assert body.sent == 0 and seen["streamed"] == 0


async def test_a_json_body_over_the_default_limit_is_a_413_not_a_parse_error() -> None:
    app, _ = service()
    async with client(app) as http:
        small = await http.post("/things", json={"name": "a"})
        assert small.status_code == 200
        big = await http.post("/things", json={"name": "a" * 5000})
    assert big.status_code == 413, big.text
    assert "1000 bytes" in big.json()["detail"]


async def test_a_body_longer_than_its_declared_length_is_still_counted() -> None:
    """At the ASGI level (a server that trusts the header would pass it on): the middleware counts
    what arrives, whatever the header says."""
    app, seen = service()
    messages = [{"type": "http.request", "body": b"y" * 4000, "more_body": True}] * 5
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    taken = 0

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        return messages[taken - 1]

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/uploads/a",
        "raw_path": b"/v1/uploads/a",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", b"10")],
        "client": ("127.0.0.1", 1),
        "server": ("svc", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert taken == 3 and seen["streamed"] <= 10_000
