"""The words of Strait's workflow definitions: step types, failure policies, step run statuses."""

from __future__ import annotations

from enum import StrEnum

MAX_STEPS = 1_000
"""A definition holds at most this many steps."""
MAX_NESTING_DEPTH = 10
"""A sub-workflow step nests child runs at most this deep."""
MAX_SECONDS = 365 * 86_400
"""Every ``*_secs`` field (timeouts, delays, sleeps) is at most a year."""
MAX_RETRY_ATTEMPTS = 100


class StepType(StrEnum):
    """``step_type`` (the SDK's helpers write ``type``); ``job`` when absent."""

    JOB = "job"
    APPROVAL = "approval"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    SUB_WORKFLOW = "sub_workflow"


class OnFailure(StrEnum):
    """``on_failure``: what a step's failure (after its last attempt) does to the run."""

    FAIL_WORKFLOW = "fail_workflow"
    """The run fails (the default)."""
    SKIP_DEPENDENTS = "skip_dependents"
    """Every step downstream of the failed one is skipped; independent branches go on."""
    CONTINUE = "continue"
    """The failure is recorded and the run goes on as if the step had completed."""
    COMPENSATE = "compensate"
    """Completed steps' compensations run newest first, then the run fails."""


class RetryBackoff(StrEnum):
    """``retry_backoff``: the SDK writes ``exponential`` or ``fixed``; Stepstone adds ``linear``."""

    EXPONENTIAL = "exponential"
    FIXED = "fixed"
    LINEAR = "linear"


class StepRunStatus(StrEnum):
    """A step run's status, Strait's words (conditions' ``step_status`` compares with these)."""

    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        StepRunStatus.COMPLETED,
        StepRunStatus.FAILED,
        StepRunStatus.SKIPPED,
        StepRunStatus.CANCELED,
    }
)
