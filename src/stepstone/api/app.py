"""The FastAPI app factory: it receives its engine; each API family mounts its router here.

Errors are rendered in the shape of the family whose path was called, so a client never sees
another family's envelope, a bare 500 or a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from stepstone.api import cloudflare, runs
from stepstone.api.cloudflare import envelope
from stepstone.api.errors import http_status
from stepstone.api.runs import errors as runs_errors
from stepstone.domain.errors import StepstoneError
from stepstone.engine import Engine

log = logging.getLogger(__name__)

Render = Callable[[int, str], JSONResponse]
#: path prefix -> how that family shapes an error
_FAMILIES: tuple[tuple[str, Render], ...] = (
    (envelope.PREFIX, envelope.failure),
    (runs_errors.PREFIX + "/", runs_errors.failure),
)


def _plain(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _render(request: Request, status: int, message: str) -> JSONResponse:
    for prefix, render in _FAMILIES:
        if request.url.path.startswith(prefix):
            return render(status, message)
    return _plain(status, message)


def create_app(engine: Engine, *, open_access: bool = False) -> FastAPI:
    """``open_access`` (``stepstone dev``): any token is accepted, all in the local tenant."""
    app = FastAPI(
        # A trailing slash is a 404 in the family's shape, not a bare redirect.
        redirect_slashes=False,
        title="Stepstone",
        version="0.1.0",
        description="A durable workflow engine. The Cloudflare-compatible Workflows API lives "
        "under /client/v4/accounts/{account_id}/workflows; the workflow-runs API (graph "
        "workflows, Strait-compatible) under /v1.",
    )
    app.state.engine = engine
    app.state.open_access = open_access

    @app.exception_handler(StepstoneError)
    async def domain_error(request: Request, exc: StepstoneError) -> JSONResponse:
        return _render(request, http_status(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _render(request, 400, envelope.describe(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such route: {request.method} {request.url.path}"
        return _render(request, exc.status_code, detail)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _render(request, 500, "internal error; the server log has the details")

    async def database_problem() -> str | None:
        try:
            await engine.store.ping()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        """Liveness and database reachability."""
        problem = await database_problem()
        if problem is not None:
            return JSONResponse({"status": "unavailable", "database": problem}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/health", tags=["ops"])
    async def health() -> JSONResponse:
        """The process answers (Strait's health check, which strait-python calls)."""
        return JSONResponse({"status": "ok", "edition": "stepstone"})

    @app.get("/health/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        """Ready for traffic: the database answers (Strait's readiness check)."""
        problem = await database_problem()
        if problem is not None:
            return runs_errors.failure(503, f"the database is unavailable: {problem}")
        return JSONResponse({"status": "ok", "edition": "stepstone"})

    cloudflare.install(app)
    runs.install(app)
    _answer_400_not_422(app)
    return app


def _answer_400_not_422(app: FastAPI) -> None:
    """Invalid requests are answered 400 in the family's shape (``validation_error``): drop
    the 422 and its schemas that FastAPI lists on every operation with parameters."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
