"""Checks every route of a family runs before its own."""

from __future__ import annotations

from fastapi import Request

from stepstone.domain.errors import ValidationError


async def refuse_nul(request: Request) -> None:
    """PostgreSQL text cannot hold NUL: refuse it in names, ids and query parameters up front
    (a 400), rather than let the database fail the lookup.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency on a worker thread, and that
    hop (with the wait for the interpreter lock behind it) cost every request a few hundred
    microseconds."""
    values = (*request.path_params.values(), *request.query_params.values())
    if any("\x00" in value for value in values):
        raise ValidationError("names, ids and query parameters cannot contain NUL characters")
