"""Graph workflows (Strait's definitions): create, read, list, update (a new immutable version
each time), delete, and trigger a run.

A graph workflow is a workflow like any other: its name is the Strait ``slug``, its versions
hold the definition's JSON (language ``graph``), and the Strait fields it has besides its steps
live in its settings. Its runs are instances, so the Cloudflare-compatible API sees them too.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stepstone.domain import jsonvalue
from stepstone.domain.errors import ConflictError, NotFoundError, ValidationError
from stepstone.domain.ids import check_workflow_name
from stepstone.domain.records import (
    Instance,
    StepRecord,
    StepState,
    StepType,
    TriggerSource,
    Version,
    Workflow,
)
from stepstone.engine.engine import Engine
from stepstone.engine.schedules import next_fire
from stepstone.graph import GraphDefinition
from stepstone.graph.workflow_spec import WorkflowSpec, parse_workflow, update_workflow
from stepstone.runtime.loader import GRAPH
from stepstone.storage.base import NewInstance, NewVersion

SETTINGS_KEY = "strait"
"""Where a graph workflow's Strait fields live in its settings."""
_IDEMPOTENT_RUNS = uuid.UUID("b9a0d1c4-6e2f-4a77-8c39-5d1e0f2a7b64")


@dataclass(frozen=True, slots=True)
class GraphWorkflow:
    workflow: Workflow
    spec: WorkflowSpec
    version: Version | None
    definition: GraphDefinition | None
    """``None`` for a Python workflow, which the workflow-runs API shows without steps."""


class GraphCatalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    # ---------------------------------------------------------------- reading
    async def get(self, tenant: str, workflow_id: str) -> GraphWorkflow:
        workflow = await self.store.get_workflow_by_id(workflow_id)
        if workflow is None or workflow.tenant != tenant:
            raise NotFoundError(f"workflow {workflow_id!r} not found")
        return await self.view(workflow)

    async def view(self, workflow: Workflow) -> GraphWorkflow:
        version = (
            await self.store.get_version(workflow.current_version_id)
            if workflow.current_version_id
            else None
        )
        return GraphWorkflow(workflow, spec_of(workflow), version, self.definition_of(version))

    def definition_of(self, version: Version | None) -> GraphDefinition | None:
        """A graph version's definition (parsed once per process, with its class)."""
        if version is None or version.language != GRAPH:
            return None
        cls = self.engine.loader.load(version)
        return getattr(cls, "definition", None)

    async def list(
        self, tenant: str, *, limit: int, offset: int = 0
    ) -> tuple[list[GraphWorkflow], int]:
        found, total = await self.store.list_workflows(tenant, limit=limit, offset=offset)
        return [await self.view(w) for w in found], total

    async def version(self, tenant: str, workflow_id: str, version_id: str) -> Version:
        await self.get(tenant, workflow_id)
        version = await self.store.get_version(version_id)
        if version is None or version.workflow_id != workflow_id:
            raise NotFoundError(f"version {version_id!r} of workflow {workflow_id!r} not found")
        return version

    # ---------------------------------------------------------------- writing
    async def create(
        self, tenant: str, body: Mapping[str, Any], *, created_by: str | None = None
    ) -> GraphWorkflow:
        spec, definition = parse_workflow(body)
        check_workflow_name(spec.slug)
        if await self.store.get_workflow(tenant, spec.slug) is not None:
            raise ConflictError(f"a workflow with slug {spec.slug!r} already exists")
        extra = {"created_by": created_by} if created_by else {}
        return await self._save(tenant, spec, definition, extra)

    async def update(
        self, tenant: str, workflow_id: str, body: Mapping[str, Any], *, by: str | None = None
    ) -> GraphWorkflow:
        current = await self.get(tenant, workflow_id)
        if current.definition is None:
            raise ConflictError(
                f"workflow {current.workflow.name!r} is a Python workflow; deploy a new "
                "version of its script instead"
            )
        spec, definition = update_workflow(current.spec, current.definition, body)
        if spec.slug != current.spec.slug:
            raise ValidationError("a workflow's slug cannot change (it names the workflow)")
        extra = {**self._stored(current.workflow), **({"updated_by": by} if by else {})}
        return await self._save(tenant, spec, definition, extra)

    async def delete(self, tenant: str, workflow_id: str) -> None:
        current = await self.get(tenant, workflow_id)
        await self.store.delete_workflow(current.workflow.id)

    async def _save(
        self,
        tenant: str,
        spec: WorkflowSpec,
        definition: GraphDefinition | None,
        extra: Mapping[str, Any],
    ) -> GraphWorkflow:
        now = self.engine.clock.now_ms()
        settings: dict[str, Any] = {SETTINGS_KEY: {**spec.to_json(), **extra}}
        if spec.max_concurrent_runs:
            settings["concurrency"] = {"limit": spec.max_concurrent_runs}
        workflow = await self.store.put_workflow(
            tenant,
            spec.slug,
            class_name=GRAPH,
            script_name="",
            schedules={spec.cron: next_fire(spec.cron, now)} if spec.cron else {},
            now=now,
            settings=settings,
        )
        if definition is not None:
            archive = json.dumps(definition.to_json(), separators=(",", ":")).encode()
            await self.store.add_version(
                workflow.id,
                NewVersion(
                    class_name=GRAPH,
                    script_name="",
                    archive=archive,
                    module="",
                    source_hash=hashlib.sha256(archive).hexdigest(),
                    # A step's own record, and those of what it waits for; and the deadline.
                    max_steps=5 * len(definition) + 10,
                    language=GRAPH,
                ),
                now,
            )
        return await self.get(tenant, workflow.id)

    @staticmethod
    def _stored(workflow: Workflow) -> dict[str, Any]:
        kept = workflow.settings.get(SETTINGS_KEY) or {}
        return {k: kept[k] for k in ("created_by",) if k in kept}

    # ---------------------------------------------------------------- runs
    async def trigger(
        self,
        tenant: str,
        workflow_id: str,
        body: Mapping[str, Any],
        *,
        created_by: str | None = None,
        triggered_by: str = "manual",
    ) -> Instance:
        """Start a run; a trigger repeated with the same ``idempotency_key`` is the same run."""
        current, version, request, params = await self._triggerable(tenant, workflow_id, body)
        run_id = (
            str(uuid.uuid5(_IDEMPOTENT_RUNS, f"{current.workflow.id}/{request.idempotency_key}"))
            if request.idempotency_key
            else str(uuid.uuid4())
        )
        if request.idempotency_key:
            existing = await self.store.get_instance(current.workflow.id, run_id)
            if existing is not None:
                return existing
        now = self.engine.clock.now_ms()
        timeout = current.spec.timeout_secs
        new = NewInstance(
            workflow_id=current.workflow.id,
            version_id=version.id,
            tenant=tenant,
            id=run_id,
            params=params,
            trigger_source=TriggerSource.CRON if triggered_by == "cron" else TriggerSource.API,
            tags=request.tags,
            max_parallel_steps=current.spec.max_parallel_steps,
            expires_at=None if timeout is None else now + timeout * 1000,
            created_by=created_by,
            triggered_by=request.triggered_by or triggered_by,
        )
        skipped = [_disabled(ref, now, seq) for seq, ref in enumerate(request.disabled, 1)]
        [created] = await self.store.create_instances(
            [new], now, history={run_id: skipped} if skipped else None
        )
        self.engine.notifier.work_available()
        return created

    async def check_trigger(
        self, tenant: str, workflow_id: str, body: Mapping[str, Any]
    ) -> GraphWorkflow:
        """Everything a trigger checks, without starting a run (a dry run)."""
        return (await self._triggerable(tenant, workflow_id, body))[0]

    async def _triggerable(
        self, tenant: str, workflow_id: str, body: Mapping[str, Any]
    ) -> tuple[GraphWorkflow, Version, _TriggerRequest, str]:
        """The workflow, its version to run, the request and its payload's JSON, once every
        check a trigger makes has passed."""
        current = await self.get(tenant, workflow_id)
        if current.version is None:
            raise ValidationError(f"workflow {current.workflow.name!r} has no version to run")
        if not current.spec.enabled:
            raise ConflictError(f"workflow {current.workflow.name!r} is disabled")
        request = _TriggerRequest.read(body, current.definition)
        params = jsonvalue.encode(request.payload, what="the run's payload")
        return current, current.version, request, params


@dataclass(frozen=True, slots=True)
class _TriggerRequest:
    payload: Any
    tags: dict[str, str] | None
    triggered_by: str | None
    idempotency_key: str | None
    disabled: tuple[str, ...]

    @classmethod
    def read(cls, body: Mapping[str, Any], definition: GraphDefinition | None) -> _TriggerRequest:
        tags = body.get("tags")
        if tags is not None and not (
            isinstance(tags, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            raise ValidationError("tags must be an object of strings")
        key = body.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
            raise ValidationError("idempotency_key must be a string of 1 to 255 characters")
        triggered_by = body.get("triggered_by")
        if triggered_by is not None and (
            not isinstance(triggered_by, str) or len(triggered_by) > 32
        ):
            raise ValidationError("triggered_by must be a string of at most 32 characters")
        return cls(
            payload=body.get("payload"),
            tags=None if tags is None else dict(tags),
            triggered_by=triggered_by or None,
            idempotency_key=key or None,
            disabled=_disabled_steps(body.get("step_overrides"), definition),
        )


def _disabled_steps(overrides: Any, definition: GraphDefinition | None) -> tuple[str, ...]:
    """The refs ``step_overrides`` disables: ``[{step_ref, enabled}]`` as the server document
    has it, or the SDK's ``{ref: {"enabled": bool}}`` / ``{ref: bool}``."""
    if overrides is None:
        return ()
    if isinstance(overrides, Mapping):
        pairs = [
            (ref, value.get("enabled", True) if isinstance(value, Mapping) else value)
            for ref, value in overrides.items()
        ]
    elif isinstance(overrides, list) and all(isinstance(o, Mapping) for o in overrides):
        pairs = [(o.get("step_ref"), o.get("enabled", True)) for o in overrides]
    else:
        raise ValidationError("step_overrides must be a list of {step_ref, enabled}")
    disabled = []
    for ref, enabled in pairs:
        if not isinstance(ref, str) or not isinstance(enabled, bool):
            raise ValidationError("each step override needs a step_ref and enabled true or false")
        if definition is None or ref not in definition.refs:
            raise ValidationError(f"step_overrides names step {ref!r}, which the workflow lacks")
        if not enabled:
            disabled.append(ref)
    return tuple(disabled)


def _disabled(ref: str, now: int, seq: int) -> StepRecord:
    return StepRecord(
        name=ref,
        count=1,
        type=StepType.STEP,
        state=StepState.SKIPPED,
        seq=seq,
        started_at=now,
        ended_at=now,
        error_message="disabled by the trigger's step_overrides",
    )


def spec_of(workflow: Workflow) -> WorkflowSpec:
    stored = workflow.settings.get(SETTINGS_KEY)
    if stored:
        return WorkflowSpec.from_json(stored)
    return WorkflowSpec(name=workflow.name, slug=workflow.name)
