"""Request body limits, enforced while the body streams in, for every service.

`BodyLimit` is an ASGI middleware: each request may send at most its route's limit (the
service's default unless a route names its own). A declared `Content-Length` over the limit is
refused before anything is read; a body without one (chunked) or longer than it declares is
counted as it arrives and refused as soon as it passes the limit, so nothing past the limit is
ever read or buffered. The refusal is a 413 naming the limit, and the connection is closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_REFUSED = Counter(
    "ooda_http_body_refused_total",
    "Requests refused with 413 because their body passed the route's limit",
    ["service", "route"],
)


class BodyTooLarge(HTTPException):
    """A request body longer than its route allows (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body larger than the {limit} bytes this route accepts",
            headers={"Connection": "close"},
        )


@dataclass(frozen=True)
class RouteLimit:
    """At most `max_bytes` of body for `method` requests to `path` (a route template such as
    `/v1/apps/{app}/spec`)."""

    method: str
    path: str
    max_bytes: int


class BodyLimit:
    """The ASGI middleware: refuses (413) any request whose body passes its route's limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        default_bytes: int,
        routes: Iterable[RouteLimit] = (),
    ) -> None:
        self.app = app
        self.service = service
        self.default_bytes = default_bytes
        self.routes: list[tuple[str, re.Pattern[str], RouteLimit]] = [
            (route.method.upper(), compile_path(route.path)[0], route) for route in routes
        ]

    def limit_of(self, method: str, path: str) -> tuple[int, str]:
        """The body limit of a request and the name of the route it comes from."""
        for route_method, pattern, route in self.routes:
            if route_method == method and pattern.match(path):
                return route.max_bytes, f"{route.method} {route.path}"
        return self.default_bytes, "default"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, route = self.limit_of(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            BODY_REFUSED.labels(self.service, route).inc()
            await _refuse(send, BodyTooLarge(limit))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    BODY_REFUSED.labels(self.service, route).inc()
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge as exc:
            # Raised where the route did not turn it into its answer (outside its handlers).
            if started:
                raise
            await _refuse(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it; counting still applies
    return None


async def _refuse(send: Send, exc: BodyTooLarge) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
