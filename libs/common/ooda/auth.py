"""Bearer-token authentication for write endpoints: who is acting, and what they may touch.

Tokens are JWTs signed with HS256 using the platform secret (`OODA_AUTH_SECRET`). Claims: `sub`
(the actor recorded on every change), `scopes` (e.g. `admin`, `team:payments`, `service:elastic`)
and `exp`. `admin` covers every scope.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ISSUER = "ooda"
ALGORITHM = "HS256"
ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """An authenticated subject and the scopes its token grants."""

    subject: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        """Whether this actor may act within `scope`."""
        return ADMIN in self.scopes or scope in self.scopes

    def require(self, scope: str) -> None:
        """Raise 403 unless this actor may act within `scope`."""
        if not self.has(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"actor {self.subject!r} lacks scope {scope!r}",
            )


def issue_token(secret: str, subject: str, scopes: list[str], ttl_seconds: int = 3600) -> str:
    """A signed token for `subject` with `scopes`, valid for `ttl_seconds`."""
    now = int(time.time())
    claims = {"sub": subject, "scopes": scopes, "iss": ISSUER, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Actor:
    """The actor of a valid token; raise ValueError saying why a token is refused."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise ValueError(str(exc)) from exc
    scopes = claims.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("claim 'scopes' must be a list of strings")
    return Actor(subject=str(claims["sub"]), scopes=frozenset(scopes))


_bearer = HTTPBearer(auto_error=False)


def admin_caller(request: Request) -> bool:
    """Whether the request carries a valid token with the `admin` scope (no error otherwise)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        return ADMIN in verify_token(_secret(request), token.strip()).scopes
    except ValueError:
        return False


def _secret(request: Request) -> str:
    settings = request.app.state.settings
    return str(settings.auth_secret.get_secret_value())


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The authenticated actor of a request, or 401."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return verify_token(_secret(request), credentials.credentials)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"invalid token: {exc}",
            headers={"WWW-Authenticate": "Bearer"},
        ) from exc


def requires(scope: str) -> Callable[..., object]:
    """A dependency giving the actor of a request whose token covers `scope` (else 401/403)."""

    async def dependency(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        actor.require(scope)
        return actor

    return dependency


AuthenticatedActor = Annotated[Actor, Depends(current_actor)]


def main(argv: list[str] | None = None) -> None:
    """`ooda-token --subject alice --scope team:payments`: print a token signed with the secret."""
    parser = argparse.ArgumentParser(description="Issue an OODA bearer token")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--scope", action="append", default=[], help="repeatable")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds")
    args = parser.parse_args(argv)
    secret = os.environ.get("OODA_AUTH_SECRET")
    if not secret:
        print(
            'OODA_AUTH_SECRET is not set (eval "$(deploy/local/ooda-local env)")', file=sys.stderr
        )
        raise SystemExit(2)
    print(issue_token(secret, args.subject, args.scope, args.ttl))
