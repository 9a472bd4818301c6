"""Errors of the cmdb's use cases, and the HTTP status and body each becomes, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError

from ooda.problems import refused_value, refused_value_answer


class CmdbError(Exception):
    """A use case refused a request; `status` and `body` say how the API answers."""

    status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON answer: the message under `detail`, plus any structured context."""
        return {"detail": self.message, **self.extra}


class BadRequest(CmdbError):
    """A malformed query (a bad selector, an unknown filter field, a bad cursor)."""

    status = 400


class Forbidden(CmdbError):
    """The actor's token does not cover the items it tries to change."""

    status = 403


class NotFound(CmdbError):
    """The item, application or change set does not exist."""

    status = 404


class Conflict(CmdbError):
    """The request contradicts the current state (e.g. a revert over later changes)."""

    status = 409


class Invalid(CmdbError):
    """The body is invalid or refers to items that do not exist: every problem with its path."""

    status = 422

    def __init__(self, problems: list[dict[str, Any]], message: str | None = None) -> None:
        super().__init__(message or "; ".join(p["msg"] for p in problems), problems=problems)

    def body(self) -> dict[str, Any]:
        """FastAPI's own 422 shape: `detail` is the list of problems (`loc`, `msg`)."""
        return {"detail": self.extra["problems"], "message": self.message}


def problem(loc: list[str | int] | tuple[str | int, ...], msg: str) -> dict[str, Any]:
    """One bad field: where (`loc`), what is wrong (`msg`) and its kind (`type`)."""
    return {"loc": list(loc), "msg": msg, "type": "value_error"}


def install(app: FastAPI) -> None:
    """Answer every CmdbError with its status and body."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CmdbError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def handle_integrity(request: Request, exc: Exception) -> JSONResponse:
        # Two writers created the same item at once; the loser's transaction rolled back whole.
        return JSONResponse(
            {"detail": "a concurrent write changed the same item; nothing was applied, retry"},
            status_code=409,
        )

    async def handle_data(request: Request, exc: Exception) -> JSONResponse:
        return refused_value_answer(refused_value(exc) or exc)

    app.add_exception_handler(CmdbError, handle)
    app.add_exception_handler(IntegrityError, handle_integrity)
    app.add_exception_handler(DataError, handle_data)
