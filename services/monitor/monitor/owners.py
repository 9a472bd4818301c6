"""Who may write for an application: its owner team in the CMDB.

Pushing samples or observations and writing alert rules are scoped per team: the token needs the
capability (`metrics:push`, `alerts:write`) and `team:<owner>` of the application as the CMDB
records it (as the pipeline and the CMDB authorise), or `admin`. Naming a team in a request grants
nothing. An unknown application is a 404, a CMDB that cannot be asked a 503.
"""

from __future__ import annotations

import time
from typing import Protocol
from urllib.parse import quote

import httpx
from fastapi import HTTPException, status

from ooda.auth import ADMIN, Actor

APPS_PATH = "/v1/apps/"


class UnknownApplication(LookupError):
    """The CMDB does not know the application."""


class CmdbUnavailable(Exception):
    """The CMDB could not be asked (down, timing out, or answering an error)."""


class Owners(Protocol):
    """Anything that names the team owning an application."""

    async def owner(self, app: str) -> str | None:
        """The owner team of `app` (None when it has none); raise UnknownApplication or
        CmdbUnavailable."""
        ...


class HttpOwners:
    """Owners read from the CMDB's `GET /v1/apps/{app}`, each kept for `ttl_s` seconds (an agent
    pushing every few seconds should not cost the CMDB a read each time)."""

    def __init__(
        self, base_url: str, client: httpx.AsyncClient, ttl_s: float = 5.0, timeout_s: float = 5.0
    ) -> None:
        self.url = base_url.rstrip("/") + APPS_PATH
        self.client = client
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._known: dict[str, tuple[float, str | None]] = {}

    async def owner(self, app: str) -> str | None:
        now = time.monotonic()
        cached = self._known.get(app)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            response = await self.client.get(self.url + quote(app, safe=""), timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise CmdbUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            self._known.pop(app, None)
            raise UnknownApplication(app)
        if response.status_code != 200:
            raise CmdbUnavailable(f"the CMDB answers {response.status_code} for {app}")
        try:
            found = response.json().get("owner_team")
        except (ValueError, AttributeError) as exc:
            raise CmdbUnavailable(f"the CMDB's answer for {app} is not an object") from exc
        owner = str(found) if found else None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[app] = (now, owner)
        return owner


async def authorize(owners: Owners, actor: Actor, app: str, capability: str) -> None:
    """Let `actor` use `capability` on `app` only as its owner team (or admin): else 403, an
    unknown application 404, a CMDB that cannot be asked 503."""
    actor.require(capability)
    if actor.has(ADMIN):
        return
    try:
        owner = await owners.owner(app)
    except UnknownApplication:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"unknown application {app!r}: the CMDB does not know it"
        ) from None
    except CmdbUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"cannot ask the CMDB who owns {app!r}; retry shortly ({exc})",
            headers={"Retry-After": "2"},
        ) from None
    if owner is None or not actor.has(f"team:{owner}"):
        needed = f"'team:{owner}'" if owner else "'admin' (the application has no owner team)"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"actor {actor.subject!r} needs {needed} with {capability!r} to write for {app}",
        )
