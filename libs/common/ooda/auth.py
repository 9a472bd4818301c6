"""Bearer-token authentication for write endpoints: who is acting, and what they may touch.

Tokens are JWTs signed with HS256 using the platform secret (`OODA_AUTH_SECRET`). Claims: `sub`
(the actor recorded on every change), `scopes` (e.g. `admin`, `team:payments`, `service:elastic`),
`aud` (the services the token is for: each service accepts only tokens naming it), `jti` (the
token's id), `iat` and `exp`. `admin` covers every scope.

A service refuses a token whose lifetime (`exp - iat`) exceeds `OODA_AUTH_MAX_TTL_SECONDS`,
allows `OODA_AUTH_LEEWAY_SECONDS` of clock skew on `iat`/`nbf`/`exp`, and refuses tokens listed in
the revocation file `OODA_AUTH_REVOCATIONS` (read again whenever it changes), one per line:

    jti <token id>                  that token
    subject <name> <unix time>      every token of <name> issued before that time

Admins issue tokens and revoke them with `ooda-token` (it needs the secret); nothing else mints
tokens from the secret except the services' own short-lived tokens to each other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ISSUER = "ooda"
ALGORITHM = "HS256"
ADMIN = "admin"
SERVICES = ("cmdb", "pipeline", "monitor", "elastic", "decision")
MAX_TTL_SECONDS = 24 * 3600
LEEWAY_SECONDS = 30.0


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


def issue_token(
    secret: str,
    subject: str,
    scopes: list[str],
    ttl_seconds: int = 3600,
    *,
    audience: str | Sequence[str],
) -> str:
    """A signed token for `subject` with `scopes`, for the service(s) `audience`, valid for
    `ttl_seconds`."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "scopes": scopes,
        "iss": ISSUER,
        "aud": [audience] if isinstance(audience, str) else list(audience),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class Revocations:
    """The revocation file: token ids and per-subject not-before times, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.token_ids: frozenset[str] = frozenset()
        self.not_before: dict[str, int] = {}

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self.token_ids, self.not_before = None, frozenset(), {}
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        ids: set[str] = set()
        not_before: dict[str, int] = {}
        for line in self.path.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "jti":
                ids.add(words[1])
            elif len(words) == 3 and words[0] == "subject" and words[2].isdigit():
                not_before[words[1]] = max(int(words[2]), not_before.get(words[1], 0))
        self._stamp, self.token_ids, self.not_before = stamp, frozenset(ids), not_before

    def reason(self, claims: dict[str, Any]) -> str | None:
        """Why a token with these (verified) claims is revoked, or None."""
        self._refresh()
        if claims["jti"] in self.token_ids:
            return f"token {claims['jti']} is revoked"
        cutoff = self.not_before.get(str(claims["sub"]))
        if cutoff is not None and int(claims["iat"]) < cutoff:
            return f"tokens of {claims['sub']!r} issued before {cutoff} are revoked"
        return None


def revoke(
    path: Path, *, token_id: str | None = None, subject: str | None = None, before: int = 0
) -> None:
    """Append a revocation to the file: one token, or every token of `subject` issued before
    `before` (default: now)."""
    if (token_id is None) == (subject is None):
        raise ValueError("revoke one token id or one subject")
    line = f"jti {token_id}" if token_id else f"subject {subject} {before or int(time.time())}"
    if any(c.isspace() for c in (token_id or subject or "")):
        raise ValueError("a token id or subject has no spaces")
    with path.open("a") as out:
        out.write(line + "\n")


def verify_token(
    secret: str,
    token: str,
    audience: str,
    *,
    max_ttl_seconds: int = MAX_TTL_SECONDS,
    leeway_seconds: float = LEEWAY_SECONDS,
    revocations: Revocations | None = None,
) -> Actor:
    """The actor of a valid token for service `audience`; raise ValueError saying why a token
    is refused."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            leeway=leeway_seconds,
            options={"require": ["exp", "iat", "sub", "aud", "jti"], "strict_aud": False},
        )
    except jwt.InvalidAudienceError as exc:
        raise ValueError(f"the token's audience does not include {audience!r}") from exc
    except jwt.PyJWTError as exc:
        raise ValueError(str(exc)) from exc
    lifetime = int(claims["exp"]) - int(claims["iat"])
    if lifetime > max_ttl_seconds:
        raise ValueError(
            f"token lifetime of {lifetime} s exceeds the maximum of {max_ttl_seconds} s"
        )
    if revocations is not None and (why := revocations.reason(claims)):
        raise ValueError(why)
    scopes = claims.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("claim 'scopes' must be a list of strings")
    return Actor(subject=str(claims["sub"]), scopes=frozenset(scopes))


_bearer = HTTPBearer(auto_error=False)
_revocations: dict[Path, Revocations] = {}


def _revocations_at(path: Path | None) -> Revocations | None:
    if path is None:
        return None
    return _revocations.setdefault(path, Revocations(path))


def _verify(request: Request, token: str) -> Actor:
    """The actor of `token` as the service that received `request` verifies it."""
    settings = request.app.state.settings
    return verify_token(
        settings.token_secret(),
        token,
        settings.service_name,
        max_ttl_seconds=settings.auth_max_ttl_seconds,
        leeway_seconds=settings.auth_leeway_seconds,
        revocations=_revocations_at(settings.auth_revocations),
    )


def admin_caller(request: Request) -> bool:
    """Whether the request carries a valid token with the `admin` scope (no error otherwise)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        return ADMIN in _verify(request, token.strip()).scopes
    except (ValueError, RuntimeError):
        return False


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
        return _verify(request, credentials.credentials)
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


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _revoke_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="ooda-token revoke", description="Revoke OODA bearer tokens"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the id of one token")
    which.add_argument("--subject", help="every token of SUBJECT issued until now")
    args = parser.parse_args(argv)
    path = os.environ.get("OODA_AUTH_REVOCATIONS")
    if not path:
        _fail("OODA_AUTH_REVOCATIONS is not set: the revocation file every service reads")
    revoke(Path(str(path)), token_id=args.jti, subject=args.subject, before=int(time.time()) + 1)


def main(argv: list[str] | None = None) -> None:
    """`ooda-token --subject alice --scope team:payments --audience cmdb`: print a token signed
    with the secret (an admin's command); `ooda-token revoke --jti ID | --subject NAME`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["revoke"]:
        _revoke_main(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="ooda-token",
        description="Issue an OODA bearer token (or `ooda-token revoke --help`)",
    )
    parser.add_argument("--subject", required=True)
    parser.add_argument("--scope", action="append", default=[], help="repeatable")
    parser.add_argument(
        "--audience",
        action="append",
        required=True,
        choices=[*SERVICES, "all"],
        help="a service the token is for (repeatable; `all`: every service)",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="seconds")
    args = parser.parse_args(argv)
    secret = os.environ.get("OODA_AUTH_SECRET")
    if not secret:
        _fail('OODA_AUTH_SECRET is not set (eval "$(deploy/local/ooda-local env)")')
    max_ttl = int(os.environ.get("OODA_AUTH_MAX_TTL_SECONDS") or MAX_TTL_SECONDS)
    if args.ttl > max_ttl:
        _fail(f"--ttl {args.ttl} exceeds the maximum the services accept ({max_ttl} s)")
    audience = list(SERVICES) if "all" in args.audience else list(dict.fromkeys(args.audience))
    print(issue_token(str(secret), args.subject, args.scope, args.ttl, audience=audience))
