"""Which HTTP status a domain error gets; each family wraps it in its own error shape."""

from __future__ import annotations

from stepstone.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StepstoneError,
)

_STATUS: tuple[tuple[type[StepstoneError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
)


def http_status(exc: StepstoneError) -> int:
    """404, 409, 401, 403 by kind; every other user-facing error is a bad request."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


class ServiceUnavailableError(StepstoneError):
    """The database cannot be reached right now; try again shortly."""

    code = "unavailable"
