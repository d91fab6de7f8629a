"""The one mapping between the core statuses and the workflow-runs API's status words."""

from __future__ import annotations

from enum import StrEnum

from stepstone.domain.errors import ValidationError
from stepstone.domain.records import Instance
from stepstone.domain.status import TIMED_OUT_ERROR, InstanceStatus
from stepstone.storage.base import RunFilter

S = InstanceStatus


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"


_WORDS: dict[InstanceStatus, RunStatus] = {
    S.QUEUED: RunStatus.PENDING,
    S.RUNNING: RunStatus.RUNNING,
    S.WAITING: RunStatus.RUNNING,
    S.WAITING_FOR_PAUSE: RunStatus.RUNNING,
    S.ROLLING_BACK: RunStatus.RUNNING,
    S.PAUSED: RunStatus.PAUSED,
    S.COMPLETE: RunStatus.COMPLETED,
    S.ERRORED: RunStatus.FAILED,
    S.TERMINATED: RunStatus.CANCELED,
}


def run_status(instance: Instance) -> RunStatus:
    if instance.status is S.ERRORED and instance.error_name == TIMED_OUT_ERROR:
        return RunStatus.TIMED_OUT
    return _WORDS[instance.status]


def status_filter(word: str | None) -> tuple[frozenset[InstanceStatus] | None, bool | None]:
    """A ``status`` query word as the store's filter: the core statuses, and for errored runs
    whether they timed out."""
    if word is None or word == "":
        return None, None
    try:
        wanted = RunStatus(word)
    except ValueError:
        words = ", ".join(s.value for s in RunStatus)
        raise ValidationError(f"status {word!r} is invalid; use one of {words}") from None
    if wanted is RunStatus.TIMED_OUT:
        return frozenset({S.ERRORED}), True
    statuses = frozenset(core for core, w in _WORDS.items() if w is wanted)
    return statuses, (False if wanted is RunStatus.FAILED else None)


def run_filter(word: str | None, **kwargs: object) -> RunFilter:
    statuses, timed_out = status_filter(word)
    return RunFilter(statuses=statuses, timed_out=timed_out, **kwargs)  # type: ignore[arg-type]
