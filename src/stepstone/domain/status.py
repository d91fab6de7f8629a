"""Instance statuses and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum

from stepstone.domain.errors import IllegalTransitionError, ValidationError


class InstanceStatus(StrEnum):
    """The core status set, in Cloudflare's words."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_FOR_PAUSE = "waitingForPause"
    WAITING = "waiting"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"
    ROLLING_BACK = "rollingBack"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({InstanceStatus.ERRORED, InstanceStatus.TERMINATED, InstanceStatus.COMPLETE})
#: Statuses a worker may claim and drive forward.
RUNNABLE = frozenset(
    {
        InstanceStatus.QUEUED,
        InstanceStatus.RUNNING,
        InstanceStatus.WAITING,
        InstanceStatus.WAITING_FOR_PAUSE,
        InstanceStatus.ROLLING_BACK,
    }
)


TIMED_OUT_ERROR = "WorkflowTimedOut"
"""The error of an instance that passed its deadline: errored, and a run that ``timed_out``."""

#: Runnable statuses of instances that have started: claimed before queued ones, so that work
#: in progress is never starved by new arrivals (queued instances wait instead, in order).
IN_PROGRESS = RUNNABLE - {InstanceStatus.QUEUED}


class Action(StrEnum):
    """Status changes a user can ask for."""

    PAUSE = "pause"
    RESUME = "resume"
    TERMINATE = "terminate"
    RESTART = "restart"

    @classmethod
    def parse(cls, value: str) -> Action:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(a.value for a in cls)
            raise ValidationError(
                f"unknown status action {value!r}: use one of {choices}"
            ) from None


S = InstanceStatus
_ALL = frozenset(S)

#: (action, current status) -> next status. Anything missing is illegal.
_USER_TRANSITIONS: dict[Action, dict[InstanceStatus, InstanceStatus]] = {
    # A pause lands between steps: a running instance first waits for its step to end.
    Action.PAUSE: {
        S.QUEUED: S.PAUSED,
        S.WAITING: S.PAUSED,
        S.RUNNING: S.WAITING_FOR_PAUSE,
        S.WAITING_FOR_PAUSE: S.WAITING_FOR_PAUSE,
        S.PAUSED: S.PAUSED,
    },
    Action.RESUME: {
        S.PAUSED: S.QUEUED,
        S.WAITING_FOR_PAUSE: S.RUNNING,
    },
    Action.TERMINATE: {s: S.TERMINATED for s in _ALL - TERMINAL},
    Action.RESTART: {s: S.QUEUED for s in _ALL - {S.QUEUED}},
}

#: Transitions the runtime makes on its own: target -> the statuses it may come from.
#: A finishing instance may still show ``waitingForPause``: the pause had nothing left to stop.
_RUNTIME_SOURCES: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    S.RUNNING: frozenset({S.QUEUED, S.WAITING, S.RUNNING}),
    S.WAITING: frozenset({S.RUNNING, S.WAITING}),
    S.PAUSED: frozenset({S.WAITING_FOR_PAUSE}),
    S.ROLLING_BACK: frozenset({S.RUNNING, S.WAITING, S.WAITING_FOR_PAUSE, S.ROLLING_BACK}),
    S.COMPLETE: frozenset({S.RUNNING, S.WAITING, S.WAITING_FOR_PAUSE}),
    S.ERRORED: frozenset({S.RUNNING, S.WAITING, S.WAITING_FOR_PAUSE, S.ROLLING_BACK}),
    S.TERMINATED: frozenset({S.ROLLING_BACK}),
}


#: What the runtime does first with an instance it picks up, done by the claim itself: a queued
#: or waiting instance is running from the moment a worker holds it.
ON_CLAIM: dict[InstanceStatus, InstanceStatus] = {
    s: S.RUNNING for s in _RUNTIME_SOURCES[S.RUNNING] if s is not S.RUNNING
}


def next_status(action: Action, current: InstanceStatus) -> InstanceStatus:
    """The status ``action`` leads to from ``current``, or raise ``IllegalTransitionError``."""
    target = _USER_TRANSITIONS[action].get(current)
    if target is None:
        raise IllegalTransitionError(f"cannot {action.value} an instance that is {current.value}")
    return target


def runtime_sources(target: InstanceStatus) -> frozenset[InstanceStatus]:
    """The statuses from which the runtime may move an instance to ``target`` by itself."""
    return _RUNTIME_SOURCES.get(target, frozenset())
