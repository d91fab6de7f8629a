"""Which HTTP status a domain error gets; each family wraps it in its own error shape."""

from __future__ import annotations

from stepstone.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StepstoneError,
    StoreUnavailableError,
)

_STATUS: tuple[tuple[type[StepstoneError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (StoreUnavailableError, 503),
)


def http_status(exc: StepstoneError) -> int:
    """401, 403, 404, 409, 503 by kind; every other user-facing error is a bad request."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400
