"""Records in the shapes Cloudflare's API answers with (field names, ISO times, redaction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stepstone.api.times import iso
from stepstone.domain import jsonvalue
from stepstone.domain.records import Instance, StepRecord, StepState, StepType, Version, Workflow
from stepstone.domain.status import InstanceStatus
from stepstone.engine.schedules import next_fire

REDACTED = "[REDACTED]"
_COUNTED = [s.value for s in InstanceStatus]


def _workflow_fields(w: Workflow) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "class_name": w.class_name,
        "script_name": w.script_name,
        "created_on": iso(w.created_at),
        "modified_on": iso(w.modified_at),
        "triggered_on": iso(w.triggered_at),
    }


def workflow(w: Workflow, counts: Mapping[str, int], now: int) -> dict[str, Any]:
    return _workflow_fields(w) | {
        "instances": {status: counts.get(status, 0) for status in _COUNTED},
        "schedules": [{"cron": c, "next_instance": iso(next_fire(c, now))} for c in w.schedules],
    }


def workflow_update(w: Workflow, version_id: str) -> dict[str, Any]:
    running = bool(w.terminate_job and w.terminate_job.get("status") == "running")
    return _workflow_fields(w) | {
        "is_deleted": 0,
        "terminator_running": int(running),
        "version_id": version_id,
    }


def version_header(v: Version) -> dict[str, Any]:
    """What a version's graph and dag answers repeat of the version."""
    return {
        "id": v.id,
        "workflow_id": v.workflow_id,
        "class_name": v.class_name,
        "created_on": iso(v.created_at),
        "modified_on": iso(v.created_at),
    }


def version(v: Version) -> dict[str, Any]:
    return version_header(v) | {
        "has_dag": False,
        "language": v.language,
        "limits": {"steps": v.max_steps},
    }


def instance_summary(i: Instance) -> dict[str, Any]:
    return {
        "id": i.id,
        "workflow_id": i.workflow_id,
        "version_id": i.version_id,
        "status": i.status.value,
        "created_on": iso(i.created_at),
        "modified_on": iso(i.modified_at),
        "started_on": iso(i.started_at),
        "ended_on": iso(i.ended_at),
        "trigger_source": i.trigger_source.value,
    }


def instance_created(i: Instance) -> dict[str, Any]:
    return {
        "id": i.id,
        "status": i.status.value,
        "version_id": i.version_id,
        "workflow_id": i.workflow_id,
        "trigger_source": i.trigger_source.value,
    }


def error(name: str | None, message: str | None) -> dict[str, str] | None:
    return None if name is None else {"name": name, "message": message or ""}


def _sensitive(step: StepRecord) -> bool:
    return bool(step.config and step.config.get("sensitive") == "output")


def step_output(step: StepRecord) -> Any:
    """The step's full value (a wait's event payload), or ``[REDACTED]``."""
    if _sensitive(step):
        return REDACTED
    value = jsonvalue.decode(step.output)
    if step.type is StepType.WAIT_FOR_EVENT and isinstance(value, dict):
        return value.get("payload")
    return value


def _text(step: StepRecord) -> str | None:
    """Step lists show outputs as JSON text; the step endpoint returns them whole."""
    if step.output is None:
        return None
    if _sensitive(step):
        return REDACTED
    value = step_output(step)
    return value if isinstance(value, str) else jsonvalue.encode(value, what="step output")


def step(s: StepRecord, now: int) -> dict[str, Any]:
    if s.type in (StepType.STEP, StepType.ROLLBACK):
        return {
            "name": s.name,
            "type": s.type.value,
            "start": iso(s.started_at),
            "end": iso(s.ended_at),
            "success": None if s.state is StepState.RUNNING else s.state is StepState.COMPLETE,
            "output": _text(s),
            "config": s.config or {},
            "attempts": [
                {
                    "start": iso(a.start),
                    "end": iso(a.end),
                    "success": a.success,
                    "error": error(a.error_name, a.error_message),
                }
                for a in s.attempts
            ],
        }
    finished = s.state in (StepState.COMPLETE, StepState.ERRORED) or (
        s.type is StepType.SLEEP and s.wake_at is not None and s.wake_at <= now
    )
    shaped: dict[str, Any] = {
        "name": s.name,
        "type": s.type.value,
        "start": iso(s.started_at),
        "end": iso(s.ended_at or s.wake_at),
        "finished": finished,
        "error": error(s.error_name, s.error_message),
    }
    if s.type is StepType.WAIT_FOR_EVENT:
        shaped["event_type"] = s.event_type
        shaped["output"] = _text(s)
    return shaped


def instance_detail(
    i: Instance, steps: Sequence[StepRecord], *, now: int, newest_first: bool, simple: bool
) -> dict[str, Any]:
    shaped_steps = [step(s, now) for s in steps]
    if i.status is InstanceStatus.TERMINATED:
        shaped_steps.append({"type": "termination", "trigger": {"source": "api"}})
    if newest_first:
        shaped_steps.reverse()
    detail: dict[str, Any] = {
        "status": i.status.value,
        "params": jsonvalue.decode(i.params),
        "output": jsonvalue.decode(i.output),
        "error": error(i.error_name, i.error_message),
        "queued": iso(i.created_at),
        "start": iso(i.started_at),
        "end": iso(i.ended_at),
        "success": None if not i.status.is_terminal else i.status is InstanceStatus.COMPLETE,
        "trigger": {"source": i.trigger_source.value},
        "versionId": i.version_id,
        "step_count": len(steps),
        "steps": [] if simple else shaped_steps,
    }
    if i.rollback_outcome:
        detail["rollback"] = {
            "outcome": i.rollback_outcome,
            "error": error(i.rollback_error_name, i.rollback_error_message),
        }
    if i.schedule:
        detail["schedule"] = i.schedule
    return detail
