"""Errors a workflow's code raises or catches."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Raise from a step to fail it at once, without further attempts.

    Args:
        message: what went wrong.
        name: the error name shown in the instance's history (default: ``NonRetryableError``).
    """

    def __init__(self, message: str = "", name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name or type(self).__name__


class StepFailedError(Exception):
    """A step failed after its last attempt.

    Raised into ``run`` the same way on first execution and on replay, so code that catches it
    behaves the same both times. ``error_name`` and ``message`` are the last attempt's error.
    """

    def __init__(self, step_name: str, error_name: str, message: str) -> None:
        super().__init__(f"step {step_name!r} failed: {error_name}: {message}")
        self.step_name = step_name
        self.error_name = error_name
        self.message = message


class WaitForEventTimeoutError(StepFailedError):
    """No matching event arrived before the wait's timeout."""


class InstanceTerminatedError(Exception):
    """Given to compensations when a user terminated the instance with rollback."""


class StepLimitError(Exception):
    """The instance tried to run more steps than its version allows."""
