"""Cloudflare's v4 envelope: ``{success, errors, messages, result, result_info}``."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

PREFIX = "/client/v4"
# Cloudflare-style numeric codes, one per HTTP status.
_CODES = {
    400: 10400,
    401: 10000,
    403: 10001,
    404: 10404,
    405: 10405,
    409: 10409,
    413: 10413,
    422: 10400,
    500: 10500,
    503: 10503,
}


def ok(result: Any, result_info: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def failure(status: int, message: str) -> JSONResponse:
    code = _CODES.get(status, status * 10 + 10000)
    return JSONResponse(
        {
            "success": False,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": None,
        },
        status_code=status,
    )


def describe(exc: RequestValidationError) -> str:
    """Pydantic's complaints as one readable line."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "invalid request: " + "; ".join(parts)
