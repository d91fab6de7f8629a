"""The one table of legal status transitions, for users' actions and the runtime's own moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepstone.domain.errors import IllegalTransitionError, ValidationError
from stepstone.domain.status import (
    RUNNABLE,
    TERMINAL,
    Action,
    InstanceStatus,
    next_status,
    runtime_sources,
)

S = InstanceStatus
A = Action


@pytest.mark.parametrize(
    ("action", "current", "expected"),
    [
        (A.PAUSE, S.QUEUED, S.PAUSED),
        (A.PAUSE, S.WAITING, S.PAUSED),
        (A.PAUSE, S.RUNNING, S.WAITING_FOR_PAUSE),
        (A.PAUSE, S.WAITING_FOR_PAUSE, S.WAITING_FOR_PAUSE),
        (A.PAUSE, S.PAUSED, S.PAUSED),
        (A.RESUME, S.PAUSED, S.QUEUED),
        (A.RESUME, S.WAITING_FOR_PAUSE, S.RUNNING),
        (A.TERMINATE, S.QUEUED, S.TERMINATED),
        (A.TERMINATE, S.RUNNING, S.TERMINATED),
        (A.TERMINATE, S.PAUSED, S.TERMINATED),
        (A.TERMINATE, S.ROLLING_BACK, S.TERMINATED),
        (A.RESTART, S.COMPLETE, S.QUEUED),
        (A.RESTART, S.ERRORED, S.QUEUED),
        (A.RESTART, S.TERMINATED, S.QUEUED),
        (A.RESTART, S.RUNNING, S.QUEUED),
        (A.RESTART, S.PAUSED, S.QUEUED),
    ],
)
def test_legal_transitions(
    action: Action, current: InstanceStatus, expected: InstanceStatus
) -> None:
    assert next_status(action, current) is expected


@pytest.mark.parametrize(
    ("action", "current"),
    [
        (A.RESUME, S.QUEUED),
        (A.RESUME, S.RUNNING),
        (A.RESUME, S.WAITING),
        (A.RESUME, S.COMPLETE),
        (A.PAUSE, S.ROLLING_BACK),
        (A.RESTART, S.QUEUED),
        *[(a, s) for s in sorted(TERMINAL) for a in (A.PAUSE, A.RESUME, A.TERMINATE)],
    ],
)
def test_illegal_transitions_name_the_action_and_status(
    action: Action, current: InstanceStatus
) -> None:
    with pytest.raises(IllegalTransitionError) as caught:
        next_status(action, current)
    assert caught.value.message == f"cannot {action.value} an instance that is {current.value}"
    assert caught.value.code == "illegal_transition"


def test_terminal_statuses_are_the_three_endings() -> None:
    assert {s for s in S if s.is_terminal} == {S.COMPLETE, S.ERRORED, S.TERMINATED}
    assert not RUNNABLE & TERMINAL
    assert S.PAUSED not in RUNNABLE


def test_action_parse() -> None:
    assert Action.parse("resume") is A.RESUME
    with pytest.raises(ValidationError, match="unknown status action 'stop'"):
        Action.parse("stop")


def test_runtime_moves_never_leave_a_terminal_status() -> None:
    for target in S:
        assert not runtime_sources(target) & TERMINAL, target
    assert runtime_sources(S.PAUSED) == {S.WAITING_FOR_PAUSE}
    assert runtime_sources(S.QUEUED) == frozenset()  # only users queue (resume, restart)


def apply(current: InstanceStatus, action: Action) -> InstanceStatus:
    try:
        return next_status(action, current)
    except IllegalTransitionError:
        return current


@given(st.lists(st.sampled_from(list(Action)), max_size=40))
def test_any_sequence_of_actions_stays_in_the_status_set(actions: list[Action]) -> None:
    current = S.QUEUED
    for action in actions:
        before = current
        current = apply(current, action)
        assert current in set(S)
        if before.is_terminal:
            assert current in (before, S.QUEUED)
            assert current is before or action is A.RESTART


@given(st.sampled_from(sorted(TERMINAL)), st.sampled_from(list(Action)))
def test_terminal_statuses_only_allow_restart(status: InstanceStatus, action: Action) -> None:
    if action is A.RESTART:
        assert next_status(action, status) is S.QUEUED
    else:
        with pytest.raises(IllegalTransitionError):
            next_status(action, status)


@given(st.sampled_from(list(S)))
def test_terminate_ends_anything_not_ended_and_restart_queues_anything_not_queued(
    status: InstanceStatus,
) -> None:
    if status.is_terminal:
        with pytest.raises(IllegalTransitionError):
            next_status(A.TERMINATE, status)
    else:
        assert next_status(A.TERMINATE, status) is S.TERMINATED
    if status is S.QUEUED:
        with pytest.raises(IllegalTransitionError):
            next_status(A.RESTART, status)
    else:
        assert next_status(A.RESTART, status) is S.QUEUED


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("user"), st.sampled_from(list(Action))),
            st.tuples(st.just("runtime"), st.sampled_from(list(S))),
        ),
        max_size=60,
    )
)
def test_users_and_the_runtime_together_only_make_table_moves(
    moves: list[tuple[str, Action | InstanceStatus]],
) -> None:
    """Interleave users' actions with the runtime's own moves: endings and pauses are sticky.

    The runtime never takes an instance out of a terminal status or out of ``paused``: only a
    user's restart (or resume, terminate) does.
    """
    current = S.QUEUED
    for who, what in moves:
        before = current
        if who == "user":
            assert isinstance(what, Action)
            current = apply(current, what)
        else:
            assert isinstance(what, InstanceStatus)
            if current in runtime_sources(what):
                current = what
        if current is not before and before.is_terminal:
            assert (who, what, current) == ("user", A.RESTART, S.QUEUED)
        if current is not before and before is S.PAUSED:
            assert who == "user"
        assert current in set(S)
