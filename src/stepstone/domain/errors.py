"""User-facing errors. One root class; the docstring is the default message."""

from __future__ import annotations


class StepstoneError(Exception):
    """Stepstone error."""

    code: str = "error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        super().__init__(self.message)


class ValidationError(StepstoneError):
    """Invalid input."""

    code = "invalid"


class NotFoundError(StepstoneError):
    """Not found."""

    code = "not_found"


class ConflictError(StepstoneError):
    """The request conflicts with the current state."""

    code = "conflict"


class IllegalTransitionError(ConflictError):
    """This status change is not allowed in the instance's current status."""

    code = "illegal_transition"


class DuplicateInstanceError(ConflictError):
    """An instance with this id already exists for this workflow."""

    code = "duplicate_instance"


class PayloadTooLargeError(ValidationError):
    """The value is larger than the limit allows."""

    code = "too_large"


class NotSerializableError(ValidationError):
    """The value cannot be encoded as JSON."""

    code = "not_serializable"


class DeterminismError(StepstoneError):
    """The workflow code no longer matches the instance's recorded history."""

    code = "determinism"


class WorkflowDefinitionError(ValidationError):
    """The workflow cannot be deployed as written."""

    code = "bad_workflow"


class StoreUnavailableError(StepstoneError):
    """The database cannot be reached right now; try again shortly."""

    code = "unavailable"


class AuthenticationError(StepstoneError):
    """Missing or invalid API key."""

    # One message for every cause (absent, malformed, unknown, revoked), so a caller learns
    # nothing about which keys exist.
    code = "unauthorized"


class PermissionDeniedError(StepstoneError):
    """This API key lacks the scope this operation needs."""

    code = "forbidden"
