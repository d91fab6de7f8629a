"""Stepstone: durable workflows in Python.

Write a class that extends ``WorkflowEntrypoint``; every ``step.do`` result is committed and never
runs twice, sleeps and waits hold no memory, and a dead worker's instances resume elsewhere.
"""

from stepstone.sdk.entrypoint import (
    ReceivedEvent,
    RollbackContext,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from stepstone.sdk.errors import (
    NonRetryableError,
    StepFailedError,
    StepLimitError,
    WaitForEventTimeoutError,
)
from stepstone.sdk.jobs import job

__all__ = [
    "NonRetryableError",
    "ReceivedEvent",
    "RollbackContext",
    "StepContext",
    "StepFailedError",
    "StepLimitError",
    "WaitForEventTimeoutError",
    "WorkflowEntrypoint",
    "WorkflowEvent",
    "WorkflowStep",
    "job",
]
