"""Deploy workflows, start instances, send events, change statuses: the rules live here.

Routers and CLI commands translate their input into these calls and the results into their own
shapes; the store only persists, and the worker only drives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from croniter import croniter

from stepstone.domain import jsonvalue
from stepstone.domain.errors import NotFoundError, ValidationError, WorkflowDefinitionError
from stepstone.domain.ids import check_instance_id, check_workflow_name, kebab_case, new_id
from stepstone.domain.limits import DEFAULT_MAX_STEPS
from stepstone.domain.records import Instance, StepRecord, TriggerSource, Version, Workflow
from stepstone.domain.status import Action, InstanceStatus, next_status
from stepstone.engine.schedules import next_fire
from stepstone.runtime.clock import Clock, SystemClock
from stepstone.runtime.loader import (
    PackedScript,
    VersionLoader,
    find_workflow_classes,
    module_defining,
    pack,
)
from stepstone.runtime.signals import Notifier
from stepstone.sdk.entrypoint import WorkflowEntrypoint
from stepstone.storage.base import KEEP, NewInstance, NewVersion, Page, Store

DEFAULT_TENANT = "local"
"""The tenant of `stepstone dev` and of CLI commands without ``--tenant``."""
S = InstanceStatus


@dataclass(frozen=True, slots=True)
class Deployed:
    workflow: Workflow
    version: Version


@dataclass(frozen=True, slots=True)
class InstanceView:
    workflow: Workflow
    instance: Instance
    steps: list[StepRecord]


class Engine:
    """The operations every edge (CLI, HTTP families) offers, over one store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        loader: VersionLoader | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.loader = loader or VersionLoader()

    # ------------------------------------------------------------------ deploy
    async def deploy_path(
        self,
        path: Path,
        *,
        class_name: str | None = None,
        name: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[Deployed]:
        """Deploy the workflow classes of a file or folder (``class_name``: just that one)."""
        script = pack(path)
        if class_name is None:
            found = find_workflow_classes(script)
            if not found:
                raise WorkflowDefinitionError(f"{path} defines no WorkflowEntrypoint subclass")
            if name is not None and len(found) > 1:
                raise WorkflowDefinitionError(
                    f"{path} defines several workflows; pass the class to deploy with --class"
                )
            targets = [(f.module, f.class_name) for f in found]
        else:
            targets = [(module_defining(script, class_name), class_name)]
        return [
            await self._deploy(script, module, cls_name, name=name, tenant=tenant)
            for module, cls_name in targets
        ]

    async def deploy_class(
        self,
        cls: type[WorkflowEntrypoint],
        *,
        name: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Deployed:
        """Deploy ``cls`` from its source file, and run that very class object in this process."""
        import inspect

        source = inspect.getsourcefile(cls)
        if source is None:
            raise WorkflowDefinitionError(f"cannot find the source file of {cls.__qualname__}")
        script = pack(Path(source))
        deployed = await self._deploy(
            script, Path(source).stem, cls.__name__, name=name, tenant=tenant, cls=cls
        )
        return deployed

    async def _deploy(
        self,
        script: PackedScript,
        module: str,
        class_name: str,
        *,
        name: str | None,
        tenant: str,
        cls: type[WorkflowEntrypoint] | None = None,
    ) -> Deployed:
        if cls is None:
            cls = self.loader.load_archive(script.archive, module, class_name)
        workflow_name = check_workflow_name(name or cls.name or kebab_case(class_name))
        schedules = _check_schedules(cls.schedules, class_name)
        max_steps = _check_limits(cls.limits, class_name)
        now = self.clock.now_ms()
        workflow = await self.store.put_workflow(
            tenant,
            workflow_name,
            class_name=class_name,
            script_name=script.script_name,
            schedules={cron: next_fire(cron, now) for cron in schedules},
            now=now,
        )
        version = await self.store.add_version(
            workflow.id,
            NewVersion(
                class_name=class_name,
                script_name=script.script_name,
                archive=script.archive,
                module=module,
                source_hash=script.source_hash,
                max_steps=max_steps,
            ),
            now,
        )
        self.loader.pin(version.id, cls)
        workflow = await self._workflow(tenant, workflow_name)
        return Deployed(workflow, version)

    # ------------------------------------------------------------------ instances
    async def create_instance(
        self,
        workflow_name: str,
        *,
        params: Any = None,
        instance_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        trigger: TriggerSource = TriggerSource.API,
    ) -> Instance:
        [created] = await self.create_instances(
            workflow_name, [(instance_id, params)], tenant=tenant, trigger=trigger
        )
        return created

    async def create_instances(
        self,
        workflow_name: str,
        items: Sequence[tuple[str | None, Any]],
        *,
        tenant: str = DEFAULT_TENANT,
        trigger: TriggerSource = TriggerSource.API,
    ) -> list[Instance]:
        """Create instances (id or ``None`` for a generated one, params) in one transaction."""
        workflow = await self._workflow(tenant, workflow_name)
        if workflow.current_version_id is None:
            raise ValidationError(f"workflow {workflow_name!r} has no deployed version")
        seen: set[str] = set()
        new = []
        for instance_id, params in items:
            iid = check_instance_id(instance_id) if instance_id is not None else new_id()
            if iid in seen:
                raise ValidationError(f"instance id {iid!r} appears twice in the batch")
            seen.add(iid)
            new.append(
                NewInstance(
                    workflow_id=workflow.id,
                    version_id=workflow.current_version_id,
                    tenant=tenant,
                    id=iid,
                    params=jsonvalue.encode(params, what="the instance params"),
                    trigger_source=trigger,
                )
            )
        created = await self.store.create_instances(new, self.clock.now_ms())
        self.notifier.work_available()
        return created

    async def get_instance(
        self, workflow_name: str, instance_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> InstanceView:
        workflow = await self._workflow(tenant, workflow_name)
        instance = await self._instance(workflow, instance_id)
        return InstanceView(workflow, instance, await self.store.load_steps(instance.pk))

    async def list_instances(
        self,
        workflow_name: str,
        *,
        status: InstanceStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Page:
        workflow = await self._workflow(tenant, workflow_name)
        return await self.store.list_instances(
            workflow.id, status=status, limit=limit, cursor=cursor
        )

    async def send_event(
        self,
        workflow_name: str,
        instance_id: str,
        event_type: str,
        payload: Any = None,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        if not isinstance(event_type, str) or not event_type or len(event_type) > 255:
            raise ValidationError("an event type must be a string of 1 to 255 characters")
        workflow = await self._workflow(tenant, workflow_name)
        instance = await self._instance(workflow, instance_id)
        if instance.status.is_terminal:
            raise ValidationError(
                f"instance {instance_id!r} is {instance.status.value}; it takes no more events"
            )
        text = jsonvalue.encode(payload, what="the event payload")
        await self.store.add_event(
            instance.pk, event_type, text, self.clock.now_ms(), wake={S.WAITING}
        )
        self.notifier.instance_changed(instance.pk)
        self.notifier.work_available()

    async def change_status(
        self,
        workflow_name: str,
        instance_id: str,
        action: Action | str,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Instance:
        """Pause, resume, terminate or restart, by the one transition table."""
        action = Action.parse(action) if isinstance(action, str) else action
        workflow = await self._workflow(tenant, workflow_name)
        instance = await self._instance(workflow, instance_id)
        for _ in range(10):  # lose a race with the runtime, read again, decide again
            target = next_status(action, instance.status)
            # Taking an instance from a worker (fence) is right unless a step is mid-flight
            # and the pause must wait for it (waitingForPause), or a pending pause is withdrawn.
            mid_step = instance.status in (S.RUNNING, S.WAITING_FOR_PAUSE) and action in (
                Action.PAUSE,
                Action.RESUME,
            )
            now = self.clock.now_ms()
            changed = await self.store.change_status(
                instance.pk,
                expected=instance.status,
                target=target,
                now=now,
                fence=not mid_step,
                ready_at=KEEP if mid_step else now if target is S.QUEUED else None,
                clear_history=action is Action.RESTART,
            )
            if changed is not None:
                self.notifier.instance_changed(changed.pk)
                self.notifier.work_available()
                return changed
            instance = await self._instance(workflow, instance_id)
        raise ValidationError("the instance kept changing; try again")

    # ------------------------------------------------------------------ lookups
    async def get_workflow(self, name: str, *, tenant: str = DEFAULT_TENANT) -> Workflow:
        return await self._workflow(tenant, name)

    async def _workflow(self, tenant: str, name: str) -> Workflow:
        workflow = await self.store.get_workflow(tenant, name)
        if workflow is None:
            raise NotFoundError(f"workflow {name!r} not found")
        return workflow

    async def _instance(self, workflow: Workflow, instance_id: str) -> Instance:
        instance = await self.store.get_instance(workflow.id, instance_id)
        if instance is None:
            raise NotFoundError(f"instance {instance_id!r} of workflow {workflow.name!r} not found")
        return instance


def _check_schedules(schedules: Sequence[str], class_name: str) -> list[str]:
    if isinstance(schedules, str):
        schedules = [schedules]
    checked = []
    for cron in schedules:
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise WorkflowDefinitionError(
                f"{class_name}.schedules has {cron!r}, which is not a cron expression "
                "(five fields, like '*/5 * * * *')"
            )
        checked.append(cron)
    return checked


def _check_limits(limits: Mapping[str, Any], class_name: str) -> int:
    unknown = set(limits) - {"steps"}
    if unknown:
        raise WorkflowDefinitionError(
            f"{class_name}.limits has unknown key(s) {sorted(unknown)}; only 'steps' is known"
        )
    steps = limits.get("steps", DEFAULT_MAX_STEPS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise WorkflowDefinitionError(f"{class_name}.limits['steps'] must be a whole number ≥ 1")
    return steps
