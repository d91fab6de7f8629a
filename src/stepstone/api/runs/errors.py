"""Strait's error shape, with the message also at the top level, where strait-python reads it.

The server document's ``ErrorResponse`` is ``{"error": {"code", "message", "details"},
"request_id"}``; the official client shows a top-level ``message`` and ignores the rest, so
both are sent.
"""

from __future__ import annotations

import uuid

from fastapi.responses import JSONResponse

PREFIX = "/v1"
_CODES = {
    400: "bad_request",
    401: "authentication_required",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "bad_request",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def failure(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {"code": _CODES.get(status, "bad_request"), "message": message},
            "message": message,
            "request_id": uuid.uuid4().hex,
        },
        status_code=status,
    )
