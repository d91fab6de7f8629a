"""The FastAPI app factory: it receives its engine; the API families mount here."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from stepstone.engine import Engine


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="Stepstone", version="0.1.0")
    app.state.engine = engine

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        """Liveness and database reachability."""
        try:
            await engine.store.ping()
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "database": f"{type(exc).__name__}: {exc}"},
                status_code=503,
            )
        return JSONResponse({"status": "ok"})

    return app
