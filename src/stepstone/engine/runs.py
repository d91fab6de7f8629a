"""Operations on runs (the workflow-runs API): read them with their step runs, change their
status, edit their steps (approve, skip, force-complete, retry a step, replay a subtree), retry
them as new runs, and release the runs waiting for an event key.

Step edits change step records and then have a worker replay the run from them (see
``storage.edit_steps``); the graph interpreter honours whatever it finds recorded.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stepstone.domain import jsonvalue
from stepstone.domain.errors import (
    ConflictError,
    IllegalTransitionError,
    NotFoundError,
    PermissionDeniedError,
    StepstoneError,
)
from stepstone.domain.records import Instance, StepRecord, StepState, StepType, Version, Workflow
from stepstone.domain.status import Action, InstanceStatus
from stepstone.engine.engine import Engine
from stepstone.engine.graph_catalog import GraphCatalog
from stepstone.graph import GraphDefinition, StepRunStatus
from stepstone.graph import StepType as GraphStepType
from stepstone.graph.step_runs import SEPARATOR, StepRunView, owner_ref, records_of, step_runs
from stepstone.runtime.graph_run import approval_event_type, key_event_type, sub_name
from stepstone.storage.base import NewInstance, Page, RunFilter, WaitingStep

S = InstanceStatus
_REOPENED = S.QUEUED
"""Where an ended run goes when a step edit reopens it."""
_IN_FLIGHT = frozenset({S.QUEUED, S.RUNNING, S.WAITING})
"""Statuses the runtime moves a run between by itself: an edit reads the same in each."""


@dataclass(frozen=True, slots=True)
class Run:
    instance: Instance
    workflow: Workflow
    version: Version | None
    definition: GraphDefinition | None


class Runs:
    def __init__(self, engine: Engine, catalog: GraphCatalog) -> None:
        self.engine = engine
        self.catalog = catalog
        self.store = engine.store

    # ---------------------------------------------------------------- reading
    async def get(self, tenant: str, run_id: str) -> Run:
        instance = await self.store.find_instance(tenant, run_id)
        if instance is None:
            raise NotFoundError(f"workflow run {run_id!r} not found")
        return await self.run_of(instance)

    async def run_of(self, instance: Instance) -> Run:
        workflow = await self.store.get_workflow_by_id(instance.workflow_id)
        if workflow is None:  # deleted under the read
            raise NotFoundError(f"workflow run {instance.id!r} not found")
        version = self.engine.loader.known(instance.version_id) or await self.store.get_version(
            instance.version_id
        )
        return Run(instance, workflow, version, self.catalog.definition_of(version))

    async def list_runs(self, tenant: str, query: RunFilter) -> Page:
        return await self.store.list_runs(tenant, query)

    async def step_runs(self, run: Run) -> list[StepRunView]:
        records = await self.store.load_steps(run.instance.pk)
        return self._views(run, records)

    def _views(self, run: Run, records: Sequence[StepRecord]) -> list[StepRunView]:
        return step_runs(
            run.instance.id,
            run.instance.version_id,
            run.definition,
            records,
            run_ended=run.instance.status.is_terminal,
            created_at=run.instance.created_at,
        )

    # ---------------------------------------------------------------- status
    async def cancel(self, tenant: str, run_id: str) -> Instance:
        """Cancel the run and, before it, the child runs its steps started."""
        run = await self.get(tenant, run_id)
        if run.instance.status is S.TERMINATED:
            return run.instance  # canceled already (a client's retry, say)
        if run.instance.status.is_terminal:
            raise ConflictError(
                f"cannot cancel workflow run {run_id!r}: it is {run.instance.status.value}"
            )
        canceled = await self._change(run, Action.TERMINATE)
        for child in await self.store.children_of(run.instance.pk):
            if not child.status.is_terminal:
                with contextlib.suppress(ConflictError):  # it ended meanwhile
                    await self.cancel(tenant, child.id)
        return canceled

    async def pause(self, tenant: str, run_id: str) -> Instance:
        return await self._change(await self.get(tenant, run_id), Action.PAUSE)

    async def resume(self, tenant: str, run_id: str) -> Instance:
        run = await self.get(tenant, run_id)
        if run.instance.status in (S.QUEUED, S.RUNNING, S.WAITING):
            return run.instance  # not paused: resumed already
        return await self._change(run, Action.RESUME)

    async def _change(self, run: Run, action: Action) -> Instance:
        try:
            return await self.engine.change_status(
                run.workflow.name, run.instance.id, action, tenant=run.workflow.tenant
            )
        except IllegalTransitionError as exc:
            raise ConflictError(
                f"cannot {action.value} workflow run {run.instance.id!r}: "
                f"it is {run.instance.status.value}"
            ) from exc

    # ---------------------------------------------------------------- step edits
    async def approve(self, tenant: str, run_id: str, ref: str, approver: str | None) -> None:
        run = await self.get(tenant, run_id)
        step = self._graph_step(run, ref)
        if step.step_type is not GraphStepType.APPROVAL:
            raise ConflictError(f"step {ref!r} is a {step.step_type.value} step, not an approval")
        # ``approver``: the one named in the request, else the calling key's owner.
        if step.approval_approvers and approver not in step.approval_approvers:
            allowed = ", ".join(repr(a) for a in step.approval_approvers)
            who = "an unnamed caller" if approver is None else repr(approver)
            raise PermissionDeniedError(
                f"step {ref!r} may be approved only by {allowed}, not by {who}"
            )
        records = await self.store.load_steps(run.instance.pk)
        status = self._status(run, records, ref)
        if status is StepRunStatus.COMPLETED:
            return  # approved already
        waiting = next((r for r in records if r.name == sub_name(ref, "approval")), None)
        if (
            waiting is None
            or waiting.state is not StepState.WAITING
            or run.instance.status.is_terminal
        ):
            raise ConflictError(f"step {ref!r} is not waiting for approval (it is {status.value})")
        payload = {"approver": approver, "approved_at": self.engine.clock.now_ms()}
        await self._deliver(run.instance.pk, approval_event_type(ref), payload)

    async def skip(self, tenant: str, run_id: str, ref: str, reason: str | None) -> None:
        run = await self.get(tenant, run_id)
        self._graph_step(run, ref)
        records = await self.store.load_steps(run.instance.pk)
        status = self._status(run, records, ref)
        if status not in (StepRunStatus.PENDING, StepRunStatus.WAITING):
            raise ConflictError(
                f"step {ref!r} is {status.value}; only a pending or waiting step can be skipped"
            )
        now = self.engine.clock.now_ms()
        settled = _settled(
            ref, records, StepState.SKIPPED, now, error=reason or "skipped by a user"
        )
        await self._edit(
            run, records, put=[settled], remove=_unsettled_parts(ref, records), reopen=False
        )

    async def force_complete(self, tenant: str, run_id: str, ref: str, result: Any) -> None:
        run = await self.get(tenant, run_id)
        self._graph_step(run, ref)
        records = await self.store.load_steps(run.instance.pk)
        status = self._status(run, records, ref)
        if status in (StepRunStatus.COMPLETED, StepRunStatus.SKIPPED):
            raise ConflictError(f"step {ref!r} is {status.value} already")
        output = jsonvalue.encode(result, what="the step's result")
        now = self.engine.clock.now_ms()
        settled = _settled(ref, records, StepState.COMPLETE, now, output=output)
        await self._edit(
            run, records, put=[settled], remove=_unsettled_parts(ref, records), reopen=True
        )

    async def retry_step(self, tenant: str, run_id: str, ref: str) -> StepRunView:
        run = await self.get(tenant, run_id)
        self._graph_step(run, ref)
        records = await self.store.load_steps(run.instance.pk)
        status = self._status(run, records, ref)
        if not status.is_terminal:
            raise ConflictError(
                f"step {ref!r} is {status.value}; only a settled step can be retried"
            )
        edited = await self._edit(
            run, records, remove={r.name for r in records_of(records, ref)}, reopen=True
        )
        views = await self.step_runs(edited)
        return next(v for v in views if v.step_ref == ref)

    async def replay_subtree(self, tenant: str, run_id: str, ref: str) -> int:
        """Reset ``ref`` and every step downstream of it; how many steps were reset."""
        run = await self.get(tenant, run_id)
        self._graph_step(run, ref)
        assert run.definition is not None
        subtree = {ref, *run.definition.descendants(ref)}
        records = await self.store.load_steps(run.instance.pk)
        await self._edit(
            run,
            records,
            remove={r.name for r in records if owner_ref(r.name) in subtree},
            reopen=True,
        )
        return len(subtree)

    async def _edit(
        self,
        run: Run,
        records: Sequence[StepRecord],
        *,
        put: Sequence[StepRecord] = (),
        remove: set[str] | Sequence[str] = (),
        reopen: bool,
    ) -> Run:
        instance = run.instance
        expected: Collection[InstanceStatus] = {instance.status}
        target: InstanceStatus | None = instance.status
        if instance.status in _IN_FLIGHT:
            # The worker moves a run between these by itself, and the edit means the same in
            # each: it may find the run in any of them, and leaves it where it is.
            expected, target = _IN_FLIGHT, None
        elif instance.status.is_terminal:
            # A failed or completed run goes on from the edit; a canceled one stays canceled.
            if instance.status is S.TERMINATED:
                raise ConflictError(
                    f"workflow run {instance.id!r} was canceled; its steps can no longer change"
                )
            if not reopen:
                raise ConflictError(
                    f"workflow run {instance.id!r} has ended ({instance.status.value})"
                )
            target = _REOPENED
        elif instance.status is S.WAITING_FOR_PAUSE:
            target = S.PAUSED
        next_seq = max((r.seq for r in records), default=0) + 1
        put = [replace(r, seq=next_seq + i) for i, r in enumerate(put)]
        edited = await self.store.edit_steps(
            instance.pk,
            expected=expected,
            target=target,
            now=self.engine.clock.now_ms(),
            put=put,
            remove=set(remove),
        )
        if edited is None:
            raise ConflictError(f"workflow run {instance.id!r} changed meanwhile; try again")
        self.engine.notifier.instance_changed(edited.pk)
        self.engine.notifier.work_available()
        return replace(run, instance=edited)

    def _graph_step(self, run: Run, ref: str) -> Any:
        if run.definition is None:
            raise ConflictError(
                f"workflow run {run.instance.id!r} is a Python workflow's; its steps are its code's"
            )
        if ref not in run.definition.refs:
            raise NotFoundError(f"step {ref!r} not found in workflow run {run.instance.id!r}")
        return run.definition.step(ref)

    def _status(self, run: Run, records: Sequence[StepRecord], ref: str) -> StepRunStatus:
        return next(v.status for v in self._views(run, records) if v.step_ref == ref)

    # ---------------------------------------------------------------- retries
    async def retry(self, tenant: str, run_id: str, *, created_by: str | None = None) -> Instance:
        """A new run of the same version and payload that keeps the steps that completed
        before the failure: the failed step and everything downstream of it run again."""
        run = await self.get(tenant, run_id)
        old = run.instance
        if not old.status.is_terminal:
            raise ConflictError(
                f"workflow run {old.id!r} is {old.status.value}; only an ended run can be retried"
            )
        records = await self.store.load_steps(old.pk)
        kept = self._kept(run, records)
        now = self.engine.clock.now_ms()
        timeout = run.instance.expires_at and (run.instance.expires_at - run.instance.created_at)
        new = NewInstance(
            workflow_id=old.workflow_id,
            version_id=old.version_id,
            tenant=old.tenant,
            id=str(uuid.uuid4()),
            params=old.params,
            tags=old.tags,
            max_parallel_steps=old.max_parallel_steps,
            expires_at=None if not timeout else now + timeout,
            created_by=created_by or old.created_by,
            triggered_by="retry",
            retry_of=old.id,
            parent_pk=None,
        )
        [created] = await self.store.create_instances([new], now, history={new.id: kept})
        self.engine.notifier.work_available()
        return created

    def _kept(self, run: Run, records: Sequence[StepRecord]) -> list[StepRecord]:
        if run.definition is None:  # a Python workflow: what completed before the first failure
            first = min((r.seq for r in records if r.state is StepState.ERRORED), default=None)
            return [
                r
                for r in records
                if r.state is StepState.COMPLETE
                and r.type is not StepType.ROLLBACK
                and (first is None or r.seq < first)
            ]
        views = {v.step_ref: v for v in self._views(run, records)}
        failed = {
            ref
            for ref, v in views.items()
            if v.status not in (StepRunStatus.COMPLETED, StepRunStatus.SKIPPED)
        }
        reset = failed | {d for ref in failed for d in run.definition.descendants(ref)}
        return [
            r
            for r in records
            if not r.name.startswith(SEPARATOR)
            and owner_ref(r.name) not in reset
            and r.state in (StepState.COMPLETE, StepState.SKIPPED)
            and r.type is not StepType.ROLLBACK
        ]

    # ---------------------------------------------------------------- bulk
    async def bulk_cancel(self, tenant: str, run_ids: Sequence[str]) -> tuple[int, int]:
        done = failed = 0
        for run_id in run_ids:
            try:
                await self.cancel(tenant, run_id)
                done += 1
            except StepstoneError:
                failed += 1
        return done, failed

    async def bulk_replay(
        self, tenant: str, run_ids: Sequence[str], *, created_by: str | None = None
    ) -> tuple[int, int]:
        done = failed = 0
        for run_id in run_ids:
            try:
                await self.retry(tenant, run_id, created_by=created_by)
                done += 1
            except StepstoneError:
                failed += 1
        return done, failed

    # ---------------------------------------------------------------- events
    async def send_event(self, tenant: str, key: str, payload: Any) -> list[WaitingStep]:
        """Release every run of the tenant waiting for ``key``; the steps released."""
        waiting = await self.store.waiting_for(tenant, key_event_type(key))
        if not waiting:
            raise NotFoundError(f"no workflow run is waiting for event key {key!r}")
        for found in waiting:
            await self._deliver(found.pk, key_event_type(key), payload)
        return waiting

    async def waiting(self, tenant: str, key: str) -> list[WaitingStep]:
        return await self.store.waiting_for(tenant, key_event_type(key))

    async def _deliver(self, pk: int, event_type: str, payload: Any) -> None:
        text = jsonvalue.encode(payload, what="the event payload")
        await self.store.add_event(
            pk, event_type, text, self.engine.clock.now_ms(), wake={S.WAITING}
        )
        self.engine.notifier.event_sent(pk)
        self.engine.notifier.work_available()


def _settled(
    ref: str,
    records: Sequence[StepRecord],
    state: StepState,
    now: int,
    *,
    output: str | None = None,
    error: str | None = None,
) -> StepRecord:
    """Step ``ref``'s own record, settled by a user's edit."""
    own = next((r for r in records if r.name == ref), None)
    return StepRecord(
        name=ref,
        count=1,
        type=StepType.STEP,
        state=state,
        seq=0,
        started_at=own.started_at if own else now,
        ended_at=now,
        attempts=own.attempts if own else (),
        output=output,
        error_message=error,
    )


def _unsettled_parts(ref: str, records: Sequence[StepRecord]) -> list[str]:
    """The records of what ``ref`` was waiting for, still open: an edit that settles the step
    closes them (a forced-complete wait must not take an event meant for another)."""
    return [
        r.name
        for r in records_of(records, ref)
        if r.name != ref and r.state in (StepState.WAITING, StepState.RUNNING)
    ]
