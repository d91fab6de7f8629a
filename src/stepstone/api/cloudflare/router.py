"""Routes of the Cloudflare-compatible Workflows API: translate, call the engine, shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request

from stepstone.api.cloudflare import models as m
from stepstone.api.cloudflare import shapes
from stepstone.api.cloudflare.auth import Caller, caller
from stepstone.api.cloudflare.bodies import InstanceCreate, StatusChange, WorkflowPut
from stepstone.api.cloudflare.envelope import PREFIX, ok
from stepstone.api.guards import refuse_nul
from stepstone.api.times import iso
from stepstone.domain.errors import NotFoundError, ValidationError
from stepstone.domain.records import StepType
from stepstone.domain.scopes import Scope
from stepstone.domain.status import Action, InstanceStatus
from stepstone.engine.engine import InstanceRequest, StepRef
from stepstone.storage.base import InstanceFilter

Reader = Annotated[Caller, Depends(caller(Scope.READ))]
Writer = Annotated[Caller, Depends(caller(Scope.WRITE))]
Executor = Annotated[Caller, Depends(caller(Scope.EXECUTE))]
WorkflowName = Annotated[str, Path(min_length=1, max_length=64)]
InstanceId = Annotated[str, Path(min_length=1, max_length=100)]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=1000)]


router = APIRouter(
    prefix=f"{PREFIX}/accounts/{{account_id}}",
    tags=["cloudflare"],
    dependencies=[Depends(refuse_nul)],
    responses=m.ERROR_RESPONSES,
)
#: Routes return the dicts ``shapes`` builds; FastAPI checks them against the response model
#: and leaves out only the optional keys the dict did not have.
_SHAPED: dict[str, Any] = {"response_model_exclude_unset": True}
_STEP_TYPES = {
    "do": StepType.STEP,
    "step": StepType.STEP,
    "sleep": StepType.SLEEP,
    "waitForEvent": StepType.WAIT_FOR_EVENT,
}


def _page_info(page: int, per_page: int, count: int, total: int) -> dict[str, int]:
    return {"page": page, "per_page": per_page, "count": count, "total_count": total}


# ---------------------------------------------------------------------- workflows
@router.get("/workflows", response_model=m.Envelope[list[m.WorkflowInfo]], **_SHAPED)
async def list_workflows(
    who: Reader, page: Page = 1, per_page: PerPage = 50, search: str | None = None
) -> dict[str, Any]:
    """List workflows, with per-status instance counts and schedules."""
    items, total = await who.engine.list_workflows(
        search=search, limit=per_page, offset=(page - 1) * per_page, tenant=who.tenant
    )
    now = who.engine.clock.now_ms()
    counts = await who.engine.instance_counts(items)
    shaped = [shapes.workflow(w, counts[w.id], now) for w in items]
    return ok(shaped, _page_info(page, per_page, len(shaped), total))


@router.get("/workflows/{workflow_name}", response_model=m.Envelope[m.WorkflowInfo], **_SHAPED)
async def get_workflow(who: Reader, workflow_name: WorkflowName) -> dict[str, Any]:
    workflow = await who.engine.get_workflow(workflow_name, tenant=who.tenant)
    if workflow.current_version_id is None:
        raise ValidationError(f"workflow {workflow_name!r} has no deployed versions")
    counts = (await who.engine.instance_counts([workflow]))[workflow.id]
    return ok(shapes.workflow(workflow, counts, who.engine.clock.now_ms()))


@router.put("/workflows/{workflow_name}", response_model=m.Envelope[m.WorkflowUpdate], **_SHAPED)
async def put_workflow(
    who: Writer, workflow_name: WorkflowName, body: WorkflowPut
) -> dict[str, Any]:
    """Create or modify a workflow from an uploaded script's class: a new version."""
    settings = body.model_dump(
        include={"limits", "concurrency", "default_retention"}, exclude_none=True
    )
    deployed = await who.engine.put_workflow(
        workflow_name,
        class_name=body.class_name,
        script_name=body.script_name,
        schedules=None if body.schedules is None else [s.cron for s in body.schedules],
        settings=settings,
        tenant=who.tenant,
    )
    return ok(shapes.workflow_update(deployed.workflow, deployed.version.id))


@router.delete("/workflows/{workflow_name}", response_model=m.Envelope[m.Deleted], **_SHAPED)
async def delete_workflow(who: Writer, workflow_name: WorkflowName) -> dict[str, Any]:
    """Delete a workflow and its instances; the script stays."""
    await who.engine.delete_workflow(workflow_name, tenant=who.tenant)
    return ok({"status": "ok", "success": True})


@router.put("/workers/scripts/{script_name}", response_model=m.Envelope[m.ScriptInfo], **_SHAPED)
async def upload_script(
    who: Writer, script_name: Annotated[str, Path(min_length=1, max_length=64)], request: Request
) -> dict[str, Any]:
    """Upload a script: Python source, or a zip of modules (Stepstone's own endpoint)."""
    script = await who.engine.upload_script(script_name, await request.body(), tenant=who.tenant)
    return ok(
        {
            "id": script.name,
            "etag": script.source_hash,
            "created_on": iso(script.created_at),
            "modified_on": iso(script.modified_at),
        }
    )


# ---------------------------------------------------------------------- versions
@router.get(
    "/workflows/{workflow_name}/versions", response_model=m.Envelope[list[m.VersionInfo]], **_SHAPED
)
async def list_versions(
    who: Reader, workflow_name: WorkflowName, page: Page = 1, per_page: PerPage = 50
) -> dict[str, Any]:
    versions = await who.engine.list_versions(workflow_name, tenant=who.tenant)
    chunk = versions[(page - 1) * per_page : page * per_page]
    return ok(
        [shapes.version(v) for v in chunk], _page_info(page, per_page, len(chunk), len(versions))
    )


@router.get(
    "/workflows/{workflow_name}/versions/{version_id}",
    response_model=m.Envelope[m.VersionInfo],
    **_SHAPED,
)
async def get_version(who: Reader, workflow_name: WorkflowName, version_id: str) -> dict[str, Any]:
    version = await who.engine.get_version(workflow_name, version_id, tenant=who.tenant)
    return ok(shapes.version(version))


@router.get(
    "/workflows/{workflow_name}/versions/{version_id}/graph",
    response_model=m.Envelope[m.VersionGraph],
    **_SHAPED,
)
async def get_graph(who: Reader, workflow_name: WorkflowName, version_id: str) -> dict[str, Any]:
    """The parsed step graph (empty until the graph parser lands)."""
    version = await who.engine.get_version(workflow_name, version_id, tenant=who.tenant)
    graph = {"class_name": version.class_name, "functions": {}, "nodes": []}
    return ok(shapes.version_header(version) | {"graph": {"version": 1, "workflow": graph}})


@router.get(
    "/workflows/{workflow_name}/versions/{version_id}/dag",
    response_model=m.Envelope[m.VersionDag],
    **_SHAPED,
)
async def get_dag(who: Reader, workflow_name: WorkflowName, version_id: str) -> dict[str, Any]:
    version = await who.engine.get_version(workflow_name, version_id, tenant=who.tenant)
    return ok(shapes.version_header(version) | {"dag": {}})


# ---------------------------------------------------------------------- instances
@router.post(
    "/workflows/{workflow_name}/instances", response_model=m.Envelope[m.InstanceCreated], **_SHAPED
)
async def create_instance(
    who: Executor, workflow_name: WorkflowName, body: InstanceCreate | None = None
) -> dict[str, Any]:
    body = body or InstanceCreate()
    [created] = await who.engine.create_instances(
        workflow_name, [_request(body)], tenant=who.tenant
    )
    return ok(shapes.instance_created(created))


@router.post(
    "/workflows/{workflow_name}/instances/batch",
    response_model=m.Envelope[list[m.InstanceCreated]],
    **_SHAPED,
)
async def create_batch(
    who: Executor,
    workflow_name: WorkflowName,
    body: Annotated[list[InstanceCreate], Body(max_length=1000)],
) -> dict[str, Any]:
    if not body:
        raise ValidationError("a batch needs at least one instance")
    created = await who.engine.create_instances(
        workflow_name, [_request(b) for b in body], tenant=who.tenant
    )
    return ok([shapes.instance_created(i) for i in created])


def _request(body: InstanceCreate) -> InstanceRequest:
    retention = (
        body.instance_retention.model_dump(exclude_none=True) if (body.instance_retention) else None
    )
    return InstanceRequest(body.instance_id, body.payload(), retention)


@router.get(
    "/workflows/{workflow_name}/instances",
    response_model=m.Envelope[list[m.InstanceSummary]],
    **_SHAPED,
)
async def list_instances(
    who: Reader,
    workflow_name: WorkflowName,
    status: InstanceStatus | None = None,
    page: Page | None = None,
    per_page: PerPage = 50,
    cursor: str | None = None,
    direction: Literal["asc", "desc"] = "desc",
    date_start: datetime | None = None,
    date_end: datetime | None = None,
) -> dict[str, Any]:
    """Newest first by default; page with ``page``/``per_page`` or with ``cursor``."""
    if cursor and page:
        raise ValidationError("use either cursor or page, not both")
    query = InstanceFilter(
        status=status,
        created_from=_ms(date_start),
        created_to=_ms(date_end),
        newest_first=direction == "desc",
        limit=per_page,
        offset=((page or 1) - 1) * per_page if not cursor else 0,
        cursor=cursor,
        count=not cursor,
    )
    found = await who.engine.query_instances(workflow_name, query, tenant=who.tenant)
    items = [shapes.instance_summary(i) for i in found.items]
    if cursor is not None:
        return ok(items, {"per_page": per_page, "count": len(items), "cursor": found.next_cursor})
    info: dict[str, Any] = _page_info(page or 1, per_page, len(items), found.total or 0)
    info["cursor"] = found.next_cursor
    return ok(items, info)


def _ms(when: datetime | None) -> int | None:
    """Cloudflare's dates carry no offset and mean UTC, whatever the server's local zone."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@router.get(
    "/workflows/{workflow_name}/instances/terminate",
    response_model=m.Envelope[m.TerminateJob],
    **_SHAPED,
)
async def terminate_job(who: Reader, workflow_name: WorkflowName) -> dict[str, Any]:
    """Status of the last terminate-all job of this workflow."""
    workflow = await who.engine.get_workflow(workflow_name, tenant=who.tenant)
    job = workflow.terminate_job or {"status": "idle"}
    return ok(
        {"status": job.get("status", "idle"), "instancesTerminated": job.get("terminated", 0)}
    )


@router.post(
    "/workflows/{workflow_name}/instances/batch/terminate",
    response_model=m.Envelope[m.TerminateJob],
    **_SHAPED,
)
async def terminate_batch(
    who: Executor,
    workflow_name: WorkflowName,
    body: Annotated[list[str] | None, Body(max_length=10_000)] = None,
) -> dict[str, Any]:
    """Start a job terminating the listed instances (no body: every unfinished one); its
    progress is at ``GET .../instances/terminate``."""
    job = await who.engine.terminate_many(workflow_name, body, tenant=who.tenant)
    return ok({"instancesTerminated": job["requested"], "status": job["status"]})


@router.get(
    "/workflows/{workflow_name}/instances/{instance_id}",
    response_model=m.Envelope[m.InstanceDetail],
    **_SHAPED,
)
async def get_instance(
    who: Reader,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    order: Literal["asc", "desc"] = "asc",
    simple: Literal["true", "false"] = "false",
) -> dict[str, Any]:
    view = await who.engine.get_instance(workflow_name, instance_id, tenant=who.tenant)
    return ok(
        shapes.instance_detail(
            view.instance,
            view.steps,
            now=who.engine.clock.now_ms(),
            newest_first=order == "desc",
            simple=simple == "true",
        )
    )


@router.get(
    "/workflows/{workflow_name}/instances/{instance_id}/step",
    response_model=m.Envelope[m.StepResult],
    **_SHAPED,
)
async def get_step(
    who: Reader,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    name: Annotated[str, Query(min_length=1)],
    type: Literal["step", "waitForEvent"] = "step",
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """A step's full output (``name`` may carry Cloudflare's ``-<count>`` suffix)."""
    try:
        _, step = await who.engine.find_step(
            workflow_name, instance_id, StepRef(name, 1, _STEP_TYPES[type]), tenant=who.tenant
        )
    except NotFoundError:
        base, _, suffix = name.rpartition("-")
        if not (base and suffix.isdigit()):
            raise
        _, step = await who.engine.find_step(
            workflow_name,
            instance_id,
            StepRef(base, int(suffix), _STEP_TYPES[type]),
            tenant=who.tenant,
        )
    error = shapes.error(step.error_name, step.error_message)
    output = shapes.step_output(step) if step.output is not None else None
    if attempt is not None:
        if attempt > len(step.attempts):
            raise ValidationError(f"step {step.name!r} has {len(step.attempts)} attempt(s)")
        tried = step.attempts[attempt - 1]
        error = shapes.error(tried.error_name, tried.error_message)
        output = output if tried.success else None
    return ok({"status": step.state.value, "error": error, "output": output})


@router.patch(
    "/workflows/{workflow_name}/instances/{instance_id}/status",
    response_model=m.Envelope[m.StatusChanged],
    **_SHAPED,
)
async def change_status(
    who: Executor, workflow_name: WorkflowName, instance_id: InstanceId, body: StatusChange
) -> dict[str, Any]:
    """Pause, resume, terminate or restart (optionally from a step)."""
    action = Action.parse(body.status)
    restart_from = None
    if body.from_ is not None:
        kind = _STEP_TYPES[body.from_.type] if body.from_.type else None
        restart_from = StepRef(body.from_.name, body.from_.count, kind)
    changed = await who.engine.change_status(
        workflow_name,
        instance_id,
        action,
        restart_from=restart_from,
        rollback=body.rollback,
        tenant=who.tenant,
    )
    return ok({"status": changed.status.value, "timestamp": iso(changed.modified_at)})


@router.post(
    "/workflows/{workflow_name}/instances/{instance_id}/events/{event_type}",
    response_model=m.Envelope[m.EventSent],
    **_SHAPED,
)
async def send_event(
    who: Executor,
    workflow_name: WorkflowName,
    instance_id: InstanceId,
    event_type: Annotated[str, Path(min_length=1, max_length=255)],
    body: Annotated[Any, Body()] = None,
) -> dict[str, Any]:
    await who.engine.send_event(workflow_name, instance_id, event_type, body, tenant=who.tenant)
    # The seed shows {}; the SDK parses {instanceId, timestamp}: answering both fits either.
    return ok({"instanceId": instance_id, "timestamp": iso(who.engine.clock.now_ms())})


def install(app: FastAPI) -> None:
    app.include_router(router)
