"""A run's step runs, read off its step records (the interpreter's layout: one record per step
ref, and ``ref#part`` records for what the step waits for)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stepstone.domain.records import StepRecord, StepState
from stepstone.graph.definition import GraphDefinition
from stepstone.graph.vocabulary import StepRunStatus

_IDS = uuid.UUID("4b0f7f55-7a43-4f8e-9f50-3c2b8a4d7e10")
SEPARATOR = "#"


def step_run_id(run_id: str, ref: str) -> str:
    """A step run's id: the same for the same run and step, every time it is read."""
    return str(uuid.uuid5(_IDS, f"run/{run_id}/{ref}"))


def workflow_step_id(version_id: str, ref: str) -> str:
    return str(uuid.uuid5(_IDS, f"version/{version_id}/{ref}"))


def owner_ref(record_name: str) -> str:
    """The step ref a record belongs to (``a#approval`` belongs to ``a``)."""
    return record_name.split(SEPARATOR, 1)[0]


def records_of(records: Sequence[StepRecord], ref: str) -> list[StepRecord]:
    """The records of step ``ref``: its own and those of what it waits for."""
    return [r for r in records if owner_ref(r.name) == ref]


@dataclass(frozen=True, slots=True)
class StepRunView:
    id: str
    step_ref: str
    workflow_step_id: str | None
    status: StepRunStatus
    attempt: int
    deps_completed: int
    deps_required: int
    output: Any
    error: str | None
    started_at: int | None
    finished_at: int | None
    created_at: int


def step_runs(
    run_id: str,
    version_id: str,
    definition: GraphDefinition | None,
    records: Sequence[StepRecord],
    *,
    run_ended: bool,
    created_at: int,
) -> list[StepRunView]:
    """Every step of the definition, in definition order, as a step run; for a run without a
    definition (a Python workflow's), one per recorded step. Steps a run that ended never
    settled are ``canceled``."""
    by_ref: dict[str, list[StepRecord]] = {}
    for record in records:
        if definition is None:  # a Python workflow's steps: each record its own step run
            name = record.name if record.count == 1 else f"{record.name} ({record.count})"
            by_ref[name] = [replace(record, name=name)]
        elif not record.name.startswith(SEPARATOR):  # (those are the run's own: its deadline)
            by_ref.setdefault(owner_ref(record.name), []).append(record)
    refs = list(definition.refs) if definition else list(by_ref)
    statuses = {ref: _status(ref, by_ref.get(ref, []), run_ended=run_ended) for ref in refs}
    views = []
    for ref in refs:
        mine = by_ref.get(ref, [])
        own = next((r for r in mine if r.name == ref), None)
        parents = definition.parents(ref) if definition else ()
        views.append(
            StepRunView(
                id=step_run_id(run_id, ref),
                step_ref=ref,
                workflow_step_id=workflow_step_id(version_id, ref) if definition else None,
                status=statuses[ref],
                attempt=max(1, len(own.attempts)) if own is not None else (1 if mine else 0),
                deps_completed=sum(1 for p in parents if statuses[p].is_terminal),
                deps_required=len(parents),
                output=_output(own),
                error=_error(own, mine),
                started_at=min((r.started_at for r in mine), default=None),
                finished_at=None if own is None or own.state is StepState.RUNNING else own.ended_at,
                created_at=min((r.started_at for r in mine), default=created_at),
            )
        )
    return views


def _status(ref: str, mine: Sequence[StepRecord], *, run_ended: bool) -> StepRunStatus:
    own = next((r for r in mine if r.name == ref), None)
    if own is not None:
        return _SETTLED.get(own.state, StepRunStatus.RUNNING)
    if any(r.state is StepState.ERRORED for r in mine):
        return StepRunStatus.FAILED
    if run_ended:
        return StepRunStatus.CANCELED
    if any(r.state is StepState.WAITING for r in mine):
        return StepRunStatus.WAITING
    if mine:
        return StepRunStatus.RUNNING
    return StepRunStatus.PENDING


_SETTLED: Mapping[StepState, StepRunStatus] = {
    StepState.COMPLETE: StepRunStatus.COMPLETED,
    StepState.SKIPPED: StepRunStatus.SKIPPED,
    StepState.ERRORED: StepRunStatus.FAILED,
    StepState.WAITING: StepRunStatus.WAITING,
}


def _output(own: StepRecord | None) -> Any:
    if own is None or own.state is not StepState.COMPLETE or own.output is None:
        return None
    return json.loads(own.output)


def _error(own: StepRecord | None, mine: Sequence[StepRecord]) -> str | None:
    for record in ([own] if own is not None else []) + list(mine):
        if record.state is StepState.ERRORED:
            return record.error_message or record.error_name or "failed"
        if record.state is StepState.SKIPPED:
            return record.error_message
    return None
