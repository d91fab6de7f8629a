"""Records in the workflow-runs API's shapes: ``WorkflowRun``, ``StepRun``, ``Workflow``,
``EventTrigger``, with the field names of the seed page and of Strait's server document."""

from __future__ import annotations

import json
from typing import Any

from stepstone.api.runs.status import run_status
from stepstone.api.times import iso
from stepstone.domain.records import Instance, TriggerSource, Version
from stepstone.engine.graph_catalog import GraphWorkflow
from stepstone.engine.runs import Run
from stepstone.graph.step_runs import StepRunView, step_run_id, workflow_step_id
from stepstone.storage.base import WaitingStep

_TRIGGERED_BY = {TriggerSource.CRON: "cron", TriggerSource.BINDING: "workflow"}


def workflow_run(run: Run, parent_id: str | None = None) -> dict[str, Any]:
    i = run.instance
    return {
        "id": i.id,
        "workflow_id": i.workflow_id,
        "project_id": i.tenant,
        "status": run_status(i).value,
        "triggered_by": i.triggered_by or _TRIGGERED_BY.get(i.trigger_source, "manual"),
        "workflow_version": run.version.number if run.version else 0,
        "max_parallel_steps": i.max_parallel_steps or 0,
        "payload": json.loads(i.params) if i.params else None,
        "error": i.error_message,
        "started_at": iso(i.started_at),
        "finished_at": iso(i.ended_at),
        "expires_at": iso(i.expires_at),
        "retry_of_run_id": i.retry_of,
        "parent_workflow_run_id": parent_id,
        "parent_step_run_id": (
            step_run_id(parent_id, i.parent_step) if parent_id and i.parent_step else None
        ),
        "tags": i.tags or {},
        "workflow_version_id": i.version_id,
        "created_by": i.created_by,
        "created_at": iso(i.created_at),
    }


def step_run(run: Instance, view: StepRunView) -> dict[str, Any]:
    return {
        "id": view.id,
        "workflow_run_id": run.id,
        "workflow_step_id": view.workflow_step_id,
        "step_ref": view.step_ref,
        "job_run_id": None,
        "attempt": view.attempt,
        "status": view.status.value,
        "deps_completed": view.deps_completed,
        "deps_required": view.deps_required,
        "output": view.output,
        "error": view.error,
        "started_at": iso(view.started_at),
        "finished_at": iso(view.finished_at),
        "created_at": iso(view.created_at),
    }


def workflow(found: GraphWorkflow) -> dict[str, Any]:
    w, spec, version = found.workflow, found.spec, found.version
    stored = w.settings.get("strait") or {}
    steps = []
    if found.definition is not None and version is not None:
        for step in found.definition.steps:
            steps.append(
                {
                    "id": workflow_step_id(version.id, step.step_ref),
                    "workflow_id": w.id,
                    **step.to_json(),
                    "created_at": iso(version.created_at),
                }
            )
    return {
        "id": w.id,
        "project_id": w.tenant,
        "name": spec.name,
        "slug": spec.slug,
        "description": spec.description,
        "enabled": spec.enabled,
        "version": version.number if version else 0,
        "version_id": version.id if version else None,
        "version_policy": spec.version_policy,
        "steps": steps,
        "tags": spec.tags,
        "timeout_secs": spec.timeout_secs,
        "max_concurrent_runs": spec.max_concurrent_runs,
        "max_parallel_steps": spec.max_parallel_steps,
        "cron": spec.cron,
        "cron_timezone": spec.cron_timezone,
        "skip_if_running": spec.skip_if_running,
        "created_by": stored.get("created_by"),
        "updated_by": stored.get("updated_by"),
        "created_at": iso(w.created_at),
        "updated_at": iso(w.modified_at),
        **spec.extra,
    }


def version(found: GraphWorkflow, v: Version) -> dict[str, Any]:
    return {
        "id": v.id,
        "workflow_id": v.workflow_id,
        "version": v.number,
        "language": v.language,
        "steps": json.loads(v.archive).get("steps", []) if v.language == "graph" else [],
        "created_at": iso(v.created_at),
    }


def event_trigger(
    tenant: str, key: str, waiting: WaitingStep, *, received_at: int | None, payload: Any
) -> dict[str, Any]:
    return {
        "id": step_run_id(waiting.instance_id, f"{waiting.step}/event"),
        "event_key": key,
        "project_id": tenant,
        "source_type": "workflow",
        "status": "received" if received_at is not None else "waiting",
        "timeout_secs": 0,
        "requested_at": iso(waiting.since),
        "expires_at": None,
        "received_at": iso(received_at),
        "request_payload": payload,
        "workflow_run_id": waiting.instance_id,
        "workflow_step_run_id": step_run_id(waiting.instance_id, waiting.step.split("#")[0]),
    }


def page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"data": items, "has_more": next_cursor is not None, "next_cursor": next_cursor}
