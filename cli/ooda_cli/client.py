"""Where the services answer, who the user is, and HTTP calls that fail with a clear reason.

Every failure becomes a `CliError` carrying the exit code scripts rely on:
0 ok, 1 the operation failed, 2 usage or authentication, 3 a service is unavailable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

OK, FAILED, USAGE, UNAVAILABLE = 0, 1, 2, 3

SERVICES = ("cmdb", "pipeline", "monitor", "elastic", "decision")
DEFAULT_PORTS = {"cmdb": 8001, "pipeline": 8002, "monitor": 8003, "elastic": 8004, "decision": 8005}


class CliError(Exception):
    """A failure to report to the user, with the process exit code it maps to."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def service_urls(env: dict[str, str] | None = None) -> dict[str, str]:
    """Base URL of every service: `OODA_<SERVICE>_URL`, else the local default port."""
    env = dict(os.environ) if env is None else env
    return {
        name: env.get(f"OODA_{name.upper()}_URL", f"http://127.0.0.1:{port}").rstrip("/")
        for name, port in DEFAULT_PORTS.items()
    }


@dataclass
class Credentials:
    """The bearer token the user was given (`OODA_TOKEN`); the CLI never mints one."""

    token: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Credentials:
        env = dict(os.environ) if env is None else env
        return cls(token=env.get("OODA_TOKEN") or None)

    def bearer(self) -> str:
        """The token to send."""
        if self.token:
            return self.token
        raise CliError(
            "no token: set OODA_TOKEN to a token an admin issued for you, e.g. "
            "`ooda-token --subject alice --scope team:web --audience all`",
            USAGE,
        )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # FastAPI validation errors
            return "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}" for d in detail
            )
        return str(detail)
    return str(body)[:500]


class Platform:
    """HTTP access to the five services, turning every failure into a `CliError`."""

    def __init__(
        self,
        urls: dict[str, str],
        credentials: Credentials,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.urls = urls
        self.credentials = credentials
        self.http = httpx.Client(transport=transport, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        auth: bool = False,
        allow_404: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Call `service`; the decoded JSON answer (None for 404 when `allow_404`)."""
        url = self.urls[service] + path
        headers = kwargs.pop("headers", {})
        if auth:
            headers["Authorization"] = f"Bearer {self.credentials.bearer()}"
        try:
            response = self.http.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(
                f"{service} is unavailable at {self.urls[service]} ({type(exc).__name__}: {exc}); "
                f"is the platform running (`make up`), or is OODA_{service.upper()}_URL right?",
                UNAVAILABLE,
            ) from exc
        if response.status_code == 404 and allow_404:
            return None
        if response.status_code in (401, 403):
            raise CliError(
                f"{service} refused the token ({response.status_code}): {_detail(response)}",
                USAGE,
            )
        if response.status_code in (502, 503, 504):
            raise CliError(
                f"{service} is unavailable ({response.status_code}): {_detail(response)}",
                UNAVAILABLE,
            )
        if response.status_code >= 400:
            raise CliError(
                f"{method} {path} on {service} failed ({response.status_code}): "
                f"{_detail(response)}",
                FAILED,
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, service: str, path: str, **kwargs: Any) -> Any:
        return self.request("GET", service, path, **kwargs)

    def put(self, service: str, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PUT", service, path, json=body, auth=True, **kwargs)

    def post(self, service: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", service, path, auth=True, **kwargs)

    def delete(self, service: str, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", service, path, auth=True, **kwargs)
