"""Records the storage tests share."""

from __future__ import annotations

from stepstone.domain.records import StepRecord, StepState, StepType


def sleep_record(wake_at: int) -> StepRecord:
    """A sleep named ``nap`` that began at 0 and waits until ``wake_at``."""
    return StepRecord(
        name="nap",
        count=1,
        type=StepType.SLEEP,
        state=StepState.WAITING,
        seq=1,
        started_at=0,
        wake_at=wake_at,
    )
