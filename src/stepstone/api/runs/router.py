"""Routes of the workflow-runs API (``/v1``): translate, call the engine, shape.

strait-python sends ``Content-Type: application/json`` with no body on several POSTs (pause,
resume, retry, skip...), so bodies are read by hand: an empty one is ``{}``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response

from stepstone.api.guards import refuse_nul
from stepstone.api.runs import shapes
from stepstone.api.runs.auth import Caller, caller
from stepstone.api.runs.errors import PREFIX
from stepstone.api.runs.status import run_filter
from stepstone.domain.errors import NotFoundError, ValidationError
from stepstone.domain.scopes import Scope
from stepstone.engine.graph_catalog import GraphCatalog
from stepstone.engine.runs import Run, Runs

Reader = Annotated[Caller, Depends(caller(Scope.READ))]
Writer = Annotated[Caller, Depends(caller(Scope.WRITE))]
Executor = Annotated[Caller, Depends(caller(Scope.EXECUTE))]
RunId = Annotated[str, Path(min_length=1, max_length=100)]
StepRef = Annotated[str, Path(min_length=1, max_length=255)]
WorkflowId = Annotated[str, Path(min_length=1, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=1000)]
MAX_BULK = 1_000


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise ValidationError("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


Body = Annotated[dict[str, Any], Depends(json_body)]


router = APIRouter(prefix=PREFIX, tags=["workflow-runs"], dependencies=[Depends(refuse_nul)])


def _catalog(c: Caller) -> GraphCatalog:
    return GraphCatalog(c.engine)


def _runs(c: Caller) -> Runs:
    return Runs(c.engine, GraphCatalog(c.engine))


async def _shaped(runs: Runs, run: Run) -> dict[str, Any]:
    parent_id = None
    if run.instance.parent_pk is not None:
        parent = await runs.store.get_instance_by_pk(run.instance.parent_pk)
        parent_id = parent.id if parent else None
    return shapes.workflow_run(run, parent_id)


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise ValidationError(f"cursor {cursor!r} is not one this server issued")
    return int(cursor)


# ---------------------------------------------------------------------- workflows
@router.post("/workflows", status_code=201)
async def create_workflow(c: Writer, body: Body) -> dict[str, Any]:
    """Create a graph workflow from a definition (its first version)."""
    if body.get("project_id") in (None, ""):
        raise ValidationError("project_id is required")
    c.check_project(body["project_id"])
    return shapes.workflow(await _catalog(c).create(c.tenant, body, created_by=c.who))


@router.get("/workflows")
async def list_workflows(
    c: Reader,
    project_id: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    c.check_project(project_id)
    offset = _offset(cursor)
    found, total = await _catalog(c).list(c.tenant, limit=limit, offset=offset)
    more = offset + len(found) < total
    return shapes.page(
        [shapes.workflow(w) for w in found], str(offset + len(found)) if more else None
    )


@router.get("/workflows/{workflow_id}")
async def get_workflow(c: Reader, workflow_id: WorkflowId) -> dict[str, Any]:
    return shapes.workflow(await _catalog(c).get(c.tenant, workflow_id))


@router.patch("/workflows/{workflow_id}")
async def update_workflow(c: Writer, workflow_id: WorkflowId, body: Body) -> dict[str, Any]:
    """Change a workflow; new steps make a new version (runs keep the one they started on)."""
    c.check_project(body.get("project_id"))
    catalog = _catalog(c)
    before = await catalog.get(c.tenant, workflow_id)
    after = await catalog.update(c.tenant, workflow_id, body, by=c.who)
    shaped = shapes.workflow(after)
    if before.version and after.version and before.version.id != after.version.id:
        shaped["previous_version_id"] = before.version.id
        page = await _runs(c).list_runs(
            c.tenant,
            run_filter("running", workflow_id=workflow_id, limit=1000),
        )
        shaped["active_runs_on_previous_version"] = sum(
            1 for i in page.items if i.version_id == before.version.id
        )
    return shaped


@router.delete("/workflows/{workflow_id}", status_code=204)
async def delete_workflow(c: Writer, workflow_id: WorkflowId) -> Response:
    await _catalog(c).delete(c.tenant, workflow_id)
    return Response(status_code=204)


@router.post("/workflows/{workflow_id}/trigger", status_code=201)
async def trigger_workflow(
    c: Executor, workflow_id: WorkflowId, body: Body, response: Response
) -> dict[str, Any]:
    """Start a run with ``payload``; the same ``idempotency_key`` is the same run. With
    ``dry_run`` (as strait-python's authoring helper sends it), check and start nothing."""
    c.check_project(body.get("project_id"))
    dry = body.get("dry_run", False)
    if not isinstance(dry, bool):
        raise ValidationError("dry_run must be true or false")
    if dry:
        checked = await _catalog(c).check_trigger(c.tenant, workflow_id, body)
        response.status_code = 200
        steps = 0 if checked.definition is None else len(checked.definition)
        return {"dry_run": True, "valid": True, "workflow_id": workflow_id, "step_count": steps}
    runs = _runs(c)
    instance = await _catalog(c).trigger(c.tenant, workflow_id, body, created_by=c.who)
    return await _shaped(runs, await runs.run_of(instance))


@router.get("/workflows/{workflow_id}/runs")
async def list_workflow_runs(
    c: Reader, workflow_id: WorkflowId, limit: Limit = 50, cursor: str | None = None
) -> dict[str, Any]:
    await _catalog(c).get(c.tenant, workflow_id)
    runs = _runs(c)
    page = await runs.list_runs(
        c.tenant, run_filter(None, workflow_id=workflow_id, limit=limit, cursor=cursor)
    )
    items = [await _shaped(runs, await runs.run_of(i)) for i in page.items]
    return shapes.page(items, page.next_cursor)


@router.get("/workflows/{workflow_id}/versions")
async def list_versions(c: Reader, workflow_id: WorkflowId) -> dict[str, Any]:
    found = await _catalog(c).get(c.tenant, workflow_id)
    versions = await c.engine.store.list_versions(found.workflow.id)
    return shapes.page([shapes.version(found, v) for v in versions], None)


@router.get("/workflows/{workflow_id}/versions/{version_id}")
async def get_version(
    c: Reader, workflow_id: WorkflowId, version_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    catalog = _catalog(c)
    found = await catalog.get(c.tenant, workflow_id)
    return shapes.version(found, await catalog.version(c.tenant, workflow_id, version_id))


@router.post("/workflows/{workflow_id}/dry-run")
async def dry_run(c: Reader, workflow_id: WorkflowId, body: Body) -> dict[str, Any]:
    """Check steps (the workflow's own when ``steps`` is empty) without saving anything."""
    from stepstone.graph import parse_definition

    found = await _catalog(c).get(c.tenant, workflow_id)
    if body.get("steps"):
        definition = parse_definition({"steps": body["steps"]})
    elif found.definition is not None:
        definition = found.definition
    else:
        raise ValidationError("this workflow has no steps to check; send some")
    return {"valid": True, "step_count": len(definition)}


@router.get("/workflows/{workflow_id}/graph")
async def get_graph(c: Reader, workflow_id: WorkflowId) -> dict[str, Any]:
    found = await _catalog(c).get(c.tenant, workflow_id)
    definition = found.definition
    if definition is None:
        return {"workflow_id": workflow_id, "roots": [], "adjacency": {}}
    return {
        "workflow_id": workflow_id,
        "roots": list(definition.roots),
        "adjacency": {ref: list(definition.children(ref)) for ref in definition.refs},
    }


# ---------------------------------------------------------------------- runs
@router.get("/workflow-runs")
async def list_runs(
    c: Reader,
    response: Response,
    project_id: str | None = None,
    status: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    """A project's runs, newest first, as a bare list (as the seed page shows it). When more
    follow, the ``X-Next-Cursor`` header (and a ``Link`` with ``rel="next"``) holds the
    ``cursor`` of the next page; ``offset`` pages too."""
    if not project_id:
        raise ValidationError("project_id is required")
    c.check_project(project_id)
    runs = _runs(c)
    page = await runs.list_runs(
        c.tenant, run_filter(status, limit=limit, cursor=cursor, offset=offset)
    )
    if page.next_cursor is not None:
        response.headers["X-Next-Cursor"] = page.next_cursor
        following = {"project_id": project_id, "limit": str(limit), "cursor": page.next_cursor}
        if status:
            following["status"] = status
        response.headers["Link"] = f'<{PREFIX}/workflow-runs?{urlencode(following)}>; rel="next"'
    return [await _shaped(runs, await runs.run_of(i)) for i in page.items]


@router.post("/workflow-runs/bulk-cancel")
async def bulk_cancel(c: Executor, body: Body) -> dict[str, int]:
    canceled, failed = await _runs(c).bulk_cancel(c.tenant, _run_ids(body))
    return {"canceled": canceled, "failed": failed}


@router.post("/workflow-runs/bulk-replay")
async def bulk_replay(c: Executor, body: Body) -> dict[str, int]:
    replayed, failed = await _runs(c).bulk_replay(c.tenant, _run_ids(body), created_by=c.who)
    return {"replayed": replayed, "failed": failed}


def _run_ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("workflow_run_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError("workflow_run_ids must be a list of run ids")
    if len(ids) > MAX_BULK:
        raise ValidationError(f"at most {MAX_BULK:,} runs at once")
    return ids


@router.get("/workflow-runs/{run_id}")
async def get_run(c: Reader, run_id: RunId) -> dict[str, Any]:
    runs = _runs(c)
    return await _shaped(runs, await runs.get(c.tenant, run_id))


@router.delete("/workflow-runs/{run_id}")
async def cancel_run(c: Executor, run_id: RunId) -> Response:
    await _runs(c).cancel(c.tenant, run_id)
    return Response(status_code=200)


@router.get("/workflow-runs/{run_id}/steps")
async def list_step_runs(c: Reader, run_id: RunId) -> list[dict[str, Any]]:
    runs = _runs(c)
    run = await runs.get(c.tenant, run_id)
    return [shapes.step_run(run.instance, v) for v in await runs.step_runs(run)]


@router.post("/workflow-runs/{run_id}/pause")
async def pause_run(c: Executor, run_id: RunId) -> Response:
    await _runs(c).pause(c.tenant, run_id)
    return Response(status_code=200)


@router.post("/workflow-runs/{run_id}/resume")
async def resume_run(c: Executor, run_id: RunId) -> Response:
    await _runs(c).resume(c.tenant, run_id)
    return Response(status_code=200)


@router.post("/workflow-runs/{run_id}/retry")
async def retry_run(c: Executor, run_id: RunId) -> dict[str, Any]:
    """A new run that keeps what completed and runs the failed step and its dependents again."""
    runs = _runs(c)
    instance = await runs.retry(c.tenant, run_id, created_by=c.who)
    return await _shaped(runs, await runs.run_of(instance))


@router.post("/workflow-runs/{run_id}/steps/{step_ref}/approve")
async def approve_step(c: Executor, run_id: RunId, step_ref: StepRef, body: Body) -> Response:
    approver = body.get("approver")
    if approver is not None and not isinstance(approver, str):
        raise ValidationError("approver must be a string")
    await _runs(c).approve(c.tenant, run_id, step_ref, approver or c.who)
    return Response(status_code=200)


@router.post("/workflow-runs/{run_id}/steps/{step_ref}/skip")
async def skip_step(c: Executor, run_id: RunId, step_ref: StepRef, body: Body) -> Response:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationError("reason must be a string")
    await _runs(c).skip(c.tenant, run_id, step_ref, reason)
    return Response(status_code=200)


@router.post("/workflow-runs/{run_id}/steps/{step_ref}/force-complete")
async def force_complete_step(
    c: Executor, run_id: RunId, step_ref: StepRef, body: Body
) -> Response:
    await _runs(c).force_complete(c.tenant, run_id, step_ref, body.get("result"))
    return Response(status_code=200)


@router.post("/workflow-runs/{run_id}/steps/{step_ref}/retry")
async def retry_step(c: Executor, run_id: RunId, step_ref: StepRef) -> dict[str, Any]:
    runs = _runs(c)
    view = await runs.retry_step(c.tenant, run_id, step_ref)
    run = await runs.get(c.tenant, run_id)
    return {"step_run": shapes.step_run(run.instance, view)}


@router.post("/workflow-runs/{run_id}/steps/{step_ref}/replay-subtree")
async def replay_subtree(c: Executor, run_id: RunId, step_ref: StepRef) -> dict[str, int]:
    return {"reset_steps": await _runs(c).replay_subtree(c.tenant, run_id, step_ref)}


# ---------------------------------------------------------------------- events
@router.post("/events/{event_key}/send")
async def send_event(
    c: Executor, event_key: Annotated[str, Path(min_length=1, max_length=240)], body: Body
) -> dict[str, Any]:
    """Release the runs waiting for ``event_key`` (their ``wait_for_event`` steps) with
    ``payload``."""
    payload = body.get("payload")
    released = await _runs(c).send_event(c.tenant, event_key, payload)
    now = c.engine.clock.now_ms()
    return shapes.event_trigger(c.tenant, event_key, released[0], received_at=now, payload=payload)


@router.get("/events/{event_key}")
async def get_event(
    c: Reader, event_key: Annotated[str, Path(min_length=1, max_length=240)]
) -> dict[str, Any]:
    waiting = await _runs(c).waiting(c.tenant, event_key)
    if not waiting:
        raise NotFoundError(f"no workflow run is waiting for event key {event_key!r}")
    return shapes.event_trigger(c.tenant, event_key, waiting[0], received_at=None, payload=None)


def install(app: FastAPI) -> None:
    app.include_router(router)
