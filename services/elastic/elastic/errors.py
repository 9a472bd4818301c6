"""Errors of the elastic service mapped to HTTP answers, in one place."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from elastic.cmdb import CmdbUnavailable


async def _cmdb_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


def install(app: FastAPI) -> None:
    """Register the service's exception handlers on `app`."""
    app.add_exception_handler(CmdbUnavailable, _cmdb_unavailable)
