"""Deploy workflows, start instances, send events, change statuses: the rules live here.

Routers and CLI commands translate their input into these calls and the results into their own
shapes; the store only persists, and the worker only drives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from croniter import croniter

from stepstone.domain import jsonvalue
from stepstone.domain.durations import to_ms
from stepstone.domain.errors import (
    ConflictError,
    NotFoundError,
    ValidationError,
    WorkflowDefinitionError,
)
from stepstone.domain.ids import check_instance_id, check_workflow_name, kebab_case, new_id
from stepstone.domain.limits import DEFAULT_MAX_STEPS
from stepstone.domain.records import (
    Claim,
    Event,
    Instance,
    Script,
    StepRecord,
    StepType,
    TriggerSource,
    Version,
    Workflow,
)
from stepstone.domain.status import Action, InstanceStatus, next_status
from stepstone.engine.schedules import next_fire
from stepstone.runtime.clock import Clock, SystemClock
from stepstone.runtime.loader import (
    PackedScript,
    VersionLoader,
    find_jobs,
    find_workflow_classes,
    module_defining,
    pack,
    unpack,
)
from stepstone.runtime.signals import Notifier, Taker
from stepstone.sdk.entrypoint import WorkflowEntrypoint
from stepstone.storage.base import (
    KEEP,
    InstanceFilter,
    NewInstance,
    NewVersion,
    Page,
    StartLease,
    Store,
)

DEFAULT_TENANT = "local"
"""The tenant of `stepstone dev` and of CLI commands without ``--tenant``."""
S = InstanceStatus
_TAKES_EVENTS = frozenset(s for s in InstanceStatus if not s.is_terminal)


@dataclass(frozen=True, slots=True)
class Deployed:
    workflow: Workflow
    version: Version


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    id: str | None = None
    params: Any = None
    retention: Mapping[str, Any] | None = None
    """``{success_retention, error_retention}``: how long to keep it once it ends."""


@dataclass(frozen=True, slots=True)
class StepRef:
    """A step of an instance's history, as a restart names it."""

    name: str
    count: int = 1
    type: StepType | None = None


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
        self._jobs: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ deploy
    async def deploy_path(
        self,
        path: Path,
        *,
        class_name: str | None = None,
        name: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[Deployed]:
        """Deploy the workflow classes of a file or folder (``class_name``: just that one),
        and register the jobs it defines (``@stepstone.job``)."""
        script = pack(path)
        jobs = find_jobs(script)
        if class_name is None:
            found = find_workflow_classes(script)
            if not found and not jobs:
                raise WorkflowDefinitionError(
                    f"{path} defines no WorkflowEntrypoint subclass and no @job function"
                )
            if name is not None and len(found) > 1:
                raise WorkflowDefinitionError(
                    f"{path} defines several workflows; pass the class to deploy with --class"
                )
            targets = [(f.module, f.class_name) for f in found]
        else:
            targets = [(module_defining(script, class_name), class_name)]
        now = self.clock.now_ms()
        await self.store.put_script(
            tenant, script.script_name, script.archive, script.source_hash, now
        )
        await self.store.put_jobs(tenant, script.script_name, jobs, now)
        return [
            await self._deploy(script, module, cls_name, name=name, tenant=tenant)
            for module, cls_name in targets
        ]

    async def upload_script(
        self, name: str, data: bytes, *, tenant: str = DEFAULT_TENANT
    ) -> Script:
        """Store a script (Python source, or a zip of modules) for workflows to be made from."""
        check_workflow_name(name)
        script = unpack(data, name)
        if not find_workflow_classes(script):
            raise WorkflowDefinitionError(f"script {name!r} defines no WorkflowEntrypoint subclass")
        return await self.store.put_script(
            tenant, name, script.archive, script.source_hash, self.clock.now_ms()
        )

    async def put_workflow(
        self,
        name: str,
        *,
        class_name: str,
        script_name: str,
        schedules: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Deployed:
        """Bind workflow ``name`` to ``class_name`` of an uploaded script: a new version."""
        stored = await self.store.get_script(tenant, script_name)
        if stored is None:
            raise ValidationError(
                f"script {script_name!r} is not uploaded: deploy it first "
                "(stepstone deploy FILE, or PUT .../workers/scripts/{script_name})"
            )
        script = unpack(stored.archive, script_name)
        module = module_defining(script, class_name)
        return await self._deploy(
            script,
            module,
            class_name,
            name=name,
            tenant=tenant,
            schedules=schedules,
            settings=settings,
        )

    async def delete_workflow(self, name: str, *, tenant: str = DEFAULT_TENANT) -> None:
        """Delete the workflow, its versions and its instances; its script stays."""
        workflow = await self._workflow(tenant, name)
        await self.store.delete_workflow(workflow.id)

    async def list_workflows(
        self,
        *,
        search: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[list[Workflow], int]:
        return await self.store.list_workflows(tenant, search=search, limit=limit, offset=offset)

    async def instance_counts(self, workflows: Sequence[Workflow]) -> dict[str, dict[str, int]]:
        """Each workflow's instances per status, by workflow id."""
        return await self.store.count_instances([w.id for w in workflows])

    async def list_versions(self, name: str, *, tenant: str = DEFAULT_TENANT) -> list[Version]:
        workflow = await self._workflow(tenant, name)
        return await self.store.list_versions(workflow.id)

    async def get_version(
        self, name: str, version_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> Version:
        workflow = await self._workflow(tenant, name)
        version = await self.store.get_version(version_id)
        if version is None or version.workflow_id != workflow.id:
            raise NotFoundError(f"version {version_id!r} of workflow {name!r} not found")
        return version

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
        # Stored as deploy_path stores it, so a PUT may bind other workflows to the script.
        await self.store.put_script(
            tenant, script.script_name, script.archive, script.source_hash, self.clock.now_ms()
        )
        return await self._deploy(
            script, Path(source).stem, cls.__name__, name=name, tenant=tenant, cls=cls
        )

    async def _deploy(
        self,
        script: PackedScript,
        module: str,
        class_name: str,
        *,
        name: str | None,
        tenant: str,
        cls: type[WorkflowEntrypoint] | None = None,
        schedules: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Deployed:
        """Make a new version; ``schedules`` and ``settings`` (from the Cloudflare API) win
        over what the class declares."""
        if cls is None:
            cls = self.loader.load_archive(script.archive, module, class_name)
        workflow_name = check_workflow_name(name or cls.name or kebab_case(class_name))
        crons = _check_schedules(cls.schedules if schedules is None else schedules, class_name)
        limits = dict(cls.limits)
        if settings and settings.get("limits"):
            limits.update(settings["limits"])
        max_steps = _check_limits(limits, class_name)
        now = self.clock.now_ms()
        workflow = await self.store.put_workflow(
            tenant,
            workflow_name,
            class_name=class_name,
            script_name=script.script_name,
            schedules={cron: next_fire(cron, now) for cron in crons},
            now=now,
            settings=_check_settings(settings) if settings is not None else None,
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
        items: Sequence[tuple[str | None, Any] | InstanceRequest],
        *,
        tenant: str = DEFAULT_TENANT,
        trigger: TriggerSource = TriggerSource.API,
    ) -> list[Instance]:
        """Create instances (id or ``None`` for a generated one, params) in one transaction.

        An instance keeps its retention, else its workflow's default retention, else forever.
        """
        workflow = await self._workflow(tenant, workflow_name)
        if workflow.current_version_id is None:
            raise ValidationError(f"workflow {workflow_name!r} has no deployed version")
        default_retention = workflow.settings.get("default_retention") or {}
        seen: set[str] = set()
        new = []
        for item in items:
            request = item if isinstance(item, InstanceRequest) else InstanceRequest(*item)
            instance_id, params = request.id, request.params
            retention = retention_ms(request.retention) if request.retention else default_retention
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
                    success_retention_ms=retention.get("success_retention"),
                    error_retention_ms=retention.get("error_retention"),
                )
            )
        now = self.clock.now_ms()
        taker = self.notifier.taker
        lease = self._start_lease(taker, workflow, len(new), now)
        created = await self.store.create_instances(new, now, lease=lease)
        if taker is not None and lease is not None:
            # The same worker the lease names, even if it began to stop meanwhile: it hands
            # them back then.
            taker.take([Claim(i, lease.owner, 1, steps=()) for i in created[: lease.count]])
        if lease is None or lease.count < len(created):
            self.notifier.work_available()
        return created

    @staticmethod
    def _start_lease(
        taker: Taker | None, workflow: Workflow, count: int, now: int
    ) -> StartLease | None:
        """Start new instances in this process's worker at once, if it has room and nothing
        older is waiting for it. Not for a workflow with a concurrency limit: only a claim
        counts what runs of it everywhere."""
        if taker is None or (workflow.settings.get("concurrency") or {}).get("limit"):
            return None
        room = min(count, taker.room())
        if room <= 0:
            return None
        return StartLease(taker.id, now + taker.lease_ms(), room)

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
        return await self.query_instances(
            workflow_name, InstanceFilter(status=status, limit=limit, cursor=cursor), tenant=tenant
        )

    async def query_instances(
        self, workflow_name: str, query: InstanceFilter, *, tenant: str = DEFAULT_TENANT
    ) -> Page:
        if not 1 <= query.limit <= 1000:
            raise ValidationError("a page holds 1 to 1000 instances")
        workflow = await self._workflow(tenant, workflow_name)
        return await self.store.list_instances(workflow.id, query)

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
        text = jsonvalue.encode(payload, what="the event payload")
        now = self.clock.now_ms()
        delivery = await self.store.deliver_event(
            tenant,
            workflow_name,
            instance_id,
            event_type,
            text,
            now,
            accept=_TAKES_EVENTS,
            wake={S.WAITING},
        )
        if delivery is None:
            await self._instance(await self._workflow(tenant, workflow_name), instance_id)
            raise NotFoundError(f"instance {instance_id!r} not found")  # deleted meanwhile
        if not delivery.added:
            raise ValidationError(
                f"instance {instance_id!r} is {delivery.status.value}; it takes no more events"
            )
        # The only one of its type pending: the run holding the instance may take it as is.
        handed = None
        if delivery.first and delivery.seq is not None:
            handed = Event(delivery.seq, event_type, text, now)
        self.notifier.event_sent(delivery.pk, handed)
        if not delivery.held:  # held by a worker: it wakes the wait in memory
            self.notifier.work_available()

    async def change_status(
        self,
        workflow_name: str,
        instance_id: str,
        action: Action | str,
        *,
        restart_from: StepRef | None = None,
        rollback: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> Instance:
        """Pause, resume, terminate or restart, by the one transition table.

        A restart clears the whole history, or with ``restart_from`` that step and every step
        after it: the steps before keep their results and are not run again.
        """
        action = Action.parse(action) if isinstance(action, str) else action
        workflow = await self._workflow(tenant, workflow_name)
        instance = await self._instance(workflow, instance_id)
        clear_from = None
        if action is Action.RESTART:
            clear_from = 0 if restart_from is None else await self._seq_of(instance, restart_from)
        elif restart_from is not None:
            raise ValidationError("'from' only goes with a restart")
        if rollback and action is not Action.TERMINATE:
            raise ValidationError("rollback only goes with terminate")
        for _ in range(10):  # lose a race with the runtime, read again, decide again
            target = next_status(action, instance.status)
            # Terminating with rollback: a worker compensates what was done, then terminates.
            compensate = rollback and instance.status is not S.ROLLING_BACK
            if compensate:
                target = S.ROLLING_BACK
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
                ready_at=KEEP
                if mid_step
                else now
                if target in (S.QUEUED, S.ROLLING_BACK)
                else None,
                clear_from_seq=clear_from,
                purge_at=self._purge_at(instance, target),
                terminating=compensate,
            )
            if changed is not None:
                self.notifier.instance_changed(changed.pk)
                self.notifier.work_available()
                return changed
            instance = await self._instance(workflow, instance_id)
        raise ValidationError("the instance kept changing; try again")

    async def terminate_many(
        self,
        workflow_name: str,
        instance_ids: Sequence[str] | None,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> dict[str, Any]:
        """Start a job that terminates the given instances (``None``: every unfinished one).

        The job runs in the background of this process; its progress is the workflow's
        ``terminate_job`` (``running``, then ``completed`` with the number terminated).
        """
        workflow = await self._workflow(tenant, workflow_name)
        if instance_ids is None:
            unfinished = [s for s in InstanceStatus if not s.is_terminal]
            targets: list[str] = []
            for status in unfinished:
                cursor = None
                while True:
                    page = await self.store.list_instances(
                        workflow.id, InstanceFilter(status=status, limit=1000, cursor=cursor)
                    )
                    targets.extend(i.id for i in page.items)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        else:
            targets = [check_instance_id(i) for i in instance_ids]
        job = {
            "status": "running",
            "requested": len(targets),
            "terminated": 0,
            "started_at": self.clock.now_ms(),
        }
        await self.store.set_terminate_job(workflow.id, job)
        task = asyncio.create_task(
            self._terminate(workflow, targets, dict(job), tenant), name="terminate job"
        )
        self._jobs.add(task)  # keep a reference until it ends
        task.add_done_callback(self._jobs.discard)
        return job

    async def _terminate(
        self, workflow: Workflow, targets: Sequence[str], job: dict[str, Any], tenant: str
    ) -> None:
        terminated = 0
        for instance_id in targets:
            try:
                await self.change_status(
                    workflow.name, instance_id, Action.TERMINATE, tenant=tenant
                )
                terminated += 1
            except (NotFoundError, ConflictError):
                continue  # already finished, or never there: nothing to terminate
        job.update(status="completed", terminated=terminated, ended_at=self.clock.now_ms())
        await self.store.set_terminate_job(workflow.id, job)

    async def find_step(
        self,
        workflow_name: str,
        instance_id: str,
        ref: StepRef,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[Instance, StepRecord]:
        view = await self.get_instance(workflow_name, instance_id, tenant=tenant)
        return view.instance, _match_step(view.steps, ref)

    async def _seq_of(self, instance: Instance, ref: StepRef) -> int:
        return _match_step(await self.store.load_steps(instance.pk), ref).seq

    def _purge_at(self, instance: Instance, target: InstanceStatus) -> int | None:
        """A terminated instance is kept for its error retention, as an errored one is."""
        if target is S.TERMINATED and instance.error_retention_ms is not None:
            return self.clock.now_ms() + instance.error_retention_ms
        return None

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


def _match_step(steps: Sequence[StepRecord], ref: StepRef) -> StepRecord:
    for step in steps:
        if step.name == ref.name and step.count == ref.count and ref.type in (None, step.type):
            return step
    kind = f" of type {ref.type.value}" if ref.type else ""
    raise NotFoundError(f"step {ref.name!r} (occurrence {ref.count}){kind} not found")


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


def _check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the settings the Cloudflare API may set, with retention durations in ms."""
    checked: dict[str, Any] = {}
    for key in ("limits", "concurrency"):
        if settings.get(key) is not None:
            checked[key] = dict(settings[key])
    retention = settings.get("default_retention")
    if retention:
        checked["default_retention"] = retention_ms(retention)
    return checked


def retention_ms(retention: Mapping[str, Any]) -> dict[str, int]:
    """``{success_retention, error_retention}`` as durations -> milliseconds."""
    unknown = set(retention) - {"success_retention", "error_retention"}
    if unknown:
        raise ValidationError(f"unknown retention key(s): {', '.join(sorted(unknown))}")
    return {k: to_ms(v, what=k) for k, v in retention.items() if v is not None}


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
