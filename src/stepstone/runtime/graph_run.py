"""The graph interpreter: a Strait definition run as durable steps of one instance.

Each graph step settles in one durable record keyed by its ref: completed with its output,
skipped, or errored. What a step waits for has records of its own under the ref
(``ref#approval``, ``ref#sleep``, ``ref#event``, ``ref#start`` and ``ref#child``). Before it
does anything for a step, the interpreter looks at what is recorded: users' edits (skip,
force-complete, retry-step, replay-subtree) write or delete those records and wake the
instance, and replay then takes the run from there. Independent steps run concurrently, at
most ``max_parallel_steps`` of them doing work (jobs, child starts) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from stepstone.domain import jsonvalue
from stepstone.domain.children import child_event_type
from stepstone.domain.records import Instance, StepRecord, StepState
from stepstone.domain.retry import Backoff, RetryPolicy
from stepstone.domain.status import TIMED_OUT_ERROR
from stepstone.graph import (
    GraphDefinition,
    GraphStep,
    OnFailure,
    StepRunStatus,
    StepType,
    TemplateRenderError,
    render_event_key,
    should_run,
    step_input,
)
from stepstone.graph.step_runs import SEPARATOR
from stepstone.graph.vocabulary import MAX_NESTING_DEPTH, MAX_SECONDS
from stepstone.runtime.graph_services import GraphServices
from stepstone.runtime.step import DurableStep
from stepstone.sdk.entrypoint import (
    RollbackContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from stepstone.sdk.errors import NonRetryableError, StepFailedError, WaitForEventTimeoutError

NO_TIMEOUT_MS = MAX_SECONDS * 1000
"""A wait without a timeout in the definition: as long as any timeout may be."""
DEFAULT_JOB_TIMEOUT_S = 600
DEFAULT_RETRIES = RetryPolicy(limit=2, delay_ms=1_000, backoff=Backoff.EXPONENTIAL)
"""A job step without retry fields gets three attempts, a second apart and then two."""


DEADLINE = f"{SEPARATOR}deadline"
"""The run's own record (no step ref holds the separator)."""


def sub_name(ref: str, part: str) -> str:
    """The record of what step ``ref`` waits for (``approval``, ``sleep``, ``event``...)."""
    return f"{ref}{SEPARATOR}{part}"


def approval_event_type(ref: str) -> str:
    return f"approve:{ref}"


def key_event_type(key: str) -> str:
    """The event type a ``wait_for_event`` step waits for: its rendered ``event_key``."""
    return f"key:{key}"


class GraphStepFailed(Exception):
    """A graph step failed and its ``on_failure`` fails the run."""

    def __init__(self, ref: str, error_name: str, message: str) -> None:
        super().__init__(f"step {ref!r} failed: {message}")
        self.ref = ref
        self.name = error_name
        self.message = f"step {ref!r} failed: {message}"


class WorkflowTimedOut(Exception):
    """The run passed its deadline (the workflow's ``timeout_secs``)."""

    name = TIMED_OUT_ERROR


class GraphWorkflow(WorkflowEntrypoint):
    """Subclassed per version with its ``definition`` (``graph_class``)."""

    definition: ClassVar[GraphDefinition]
    strict_history: ClassVar[bool] = False
    """Edits of step records are expected: a recorded step the run does not reach is not a
    sign of changed code, as it is for Python workflows."""

    services: GraphServices
    instance: Instance

    def attach(self, services: GraphServices, instance: Instance) -> None:
        self.services = services
        self.instance = instance

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        assert isinstance(step, DurableStep)
        return await _Interpretation(self, event.payload, step).run()


def graph_class(version_id: str, definition: GraphDefinition) -> type[GraphWorkflow]:
    return type(
        f"Graph_{version_id.replace('-', '_')}", (GraphWorkflow,), {"definition": definition}
    )


@dataclass(slots=True)
class _Outcome:
    status: StepRunStatus
    output: Any = None


class _Interpretation:
    def __init__(self, workflow: GraphWorkflow, payload: Any, step: DurableStep) -> None:
        self.definition = workflow.definition
        self.services = workflow.services
        self.instance = workflow.instance
        self.payload = payload
        self.step = step
        self.outcomes: dict[str, _Outcome] = {}
        self.settled = {ref: asyncio.Event() for ref in self.definition.refs}
        self.blocked: dict[str, str] = {}
        """Steps a failed ``skip_dependents`` step skips, with the reason."""
        parallel = self.instance.max_parallel_steps or self.definition.max_parallel_steps
        self.slots = asyncio.Semaphore(parallel) if parallel else None

    # ---------------------------------------------------------------- the run
    async def run(self) -> Any:
        tasks = [
            asyncio.create_task(self._settle(ref), name=f"graph step {ref}")
            for ref in self.definition.topological_order
        ]
        deadline = (
            asyncio.create_task(self._deadline(self.instance.expires_at), name="graph deadline")
            if self.instance.expires_at is not None
            else None
        )
        waiting: set[asyncio.Task[None]] = set(tasks) | ({deadline} if deadline else set())
        try:
            while any(not t.done() for t in tasks):
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                waiting -= done
                for finished in done:
                    if not finished.cancelled() and finished.exception() is not None:
                        raise finished.exception()  # type: ignore[misc]
        finally:
            for task in (*tasks, *([deadline] if deadline else [])):
                task.cancel()
            for task in (*tasks, *([deadline] if deadline else [])):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return {
            ref: o.output for ref, o in self.outcomes.items() if o.status is StepRunStatus.COMPLETED
        }

    async def _deadline(self, expires_at: int) -> None:
        await self.step.sleep_until(DEADLINE, expires_at)
        self.step.compensations.clear()
        raise WorkflowTimedOut("the run passed its deadline (the workflow's timeout_secs)")

    # ---------------------------------------------------------------- one step
    async def _settle(self, ref: str) -> None:
        graph_step = self.definition.step(ref)
        for parent in self.definition.parents(ref):
            await self.settled[parent].wait()
        self.outcomes[ref] = await self._outcome(graph_step)
        self.settled[ref].set()

    async def _outcome(self, s: GraphStep) -> _Outcome:
        ref = s.step_ref
        recorded = self.step.recorded(ref)
        if recorded is not None and recorded.state is not StepState.RUNNING:
            return await self._recorded(s, recorded)
        if ref in self.blocked:
            await self.step.skip(ref, self.blocked[ref])
            return _Outcome(StepRunStatus.SKIPPED)
        if not should_run(s, self.payload, self._outputs(), self._statuses()):
            await self.step.skip(ref, "its condition was false")
            return _Outcome(StepRunStatus.SKIPPED)
        try:
            output = await self._execute(s)
        except (StepFailedError, WaitForEventTimeoutError, NonRetryableError) as exc:
            return self._failed(s, getattr(exc, "error_name", type(exc).__name__), _text(exc))
        return _Outcome(StepRunStatus.COMPLETED, output)

    async def _recorded(self, s: GraphStep, record: StepRecord) -> _Outcome:
        if record.state is StepState.SKIPPED:
            return _Outcome(StepRunStatus.SKIPPED)
        if record.state is StepState.ERRORED:
            return self._failed(s, record.error_name or "Error", record.error_message or "")
        if s.step_type is StepType.JOB and s.compensation_job_id:
            # Through the step, which returns its result and registers its compensation again
            # (a later failure that compensates must undo it too).
            data = step_input(s, self.payload, self._outputs())
            return _Outcome(StepRunStatus.COMPLETED, await self._job(s, data))
        return _Outcome(StepRunStatus.COMPLETED, jsonvalue.decode(record.output))

    def _failed(self, s: GraphStep, error_name: str, message: str) -> _Outcome:
        """Apply the step's ``on_failure``: the run fails, or goes on around it."""
        if s.on_failure is OnFailure.SKIP_DEPENDENTS:
            for ref in self.definition.descendants(s.step_ref):
                self.blocked.setdefault(ref, f"step {s.step_ref!r}, which it depends on, failed")
        elif s.on_failure is not OnFailure.CONTINUE:
            if s.on_failure is not OnFailure.COMPENSATE:
                self.step.compensations.clear()
            raise GraphStepFailed(s.step_ref, error_name, message)
        return _Outcome(StepRunStatus.FAILED)

    def _outputs(self) -> dict[str, Any]:
        return {ref: o.output for ref, o in self.outcomes.items()}

    def _statuses(self) -> Mapping[str, str]:
        return {
            ref: (self.outcomes[ref].status if ref in self.outcomes else StepRunStatus.PENDING)
            for ref in self.definition.refs
        }

    # ---------------------------------------------------------------- by type
    async def _execute(self, s: GraphStep) -> Any:
        ref = s.step_ref
        step = self.step
        try:
            data = step_input(s, self.payload, self._outputs())
        except TemplateRenderError as exc:
            raise NonRetryableError(exc.message) from None
        if s.step_type is StepType.JOB:
            return await self._job(s, data)
        if s.step_type is StepType.APPROVAL:
            timeout = _ms(s.approval_timeout_secs)
            got = await step.wait_for_event(
                sub_name(ref, "approval"), type=approval_event_type(ref), timeout=timeout
            )
            approval = got.payload if isinstance(got.payload, dict) else {}
            return await step.do(ref, _value, {"approved": True, **approval})
        if s.step_type is StepType.SLEEP:
            await step.sleep(sub_name(ref, "sleep"), (s.sleep_duration_secs or 0) * 1000)
            return await step.do(ref, _value, None)
        if s.step_type is StepType.WAIT_FOR_EVENT:
            try:
                key = render_event_key(s, self.payload, self._outputs())
            except TemplateRenderError as exc:
                raise NonRetryableError(exc.message) from None
            got = await step.wait_for_event(
                sub_name(ref, "event"), type=key_event_type(key), timeout=_ms(s.event_timeout_secs)
            )
            return await step.do(ref, _value, got.payload)
        return await self._child(s, data)

    async def _job(self, s: GraphStep, data: Any) -> Any:
        policy = s.retry_policy(DEFAULT_RETRIES)
        timeout_s = s.timeout_secs_override or DEFAULT_JOB_TIMEOUT_S
        tenant, job_id = self.instance.tenant, s.job_id or ""
        rollback = None
        if s.compensation_job_id:
            rollback = _Compensation(self.services, tenant, s.compensation_job_id, s)
        async with self._slot():
            return await self.step.do(
                s.step_ref,
                self.services.run_job,
                tenant,
                job_id,
                data,
                timeout_s,
                retries={
                    "limit": policy.limit,
                    "delay": policy.delay_ms,
                    "backoff": policy.backoff.value,
                    "max_delay": policy.max_delay_ms,
                },
                timeout=timeout_s * 1000,
                rollback=rollback,
            )

    async def _child(self, s: GraphStep, data: Any) -> Any:
        ref = s.step_ref
        async with self._slot():
            child_id = await self.step.do(
                sub_name(ref, "start"),
                self.services.start_child,
                self.instance,
                ref,
                s.sub_workflow_id or "",
                data,
                s.max_nesting_depth or MAX_NESTING_DEPTH,
            )
        got = await self.step.wait_for_event(
            sub_name(ref, "child"), type=child_event_type(child_id), timeout=NO_TIMEOUT_MS
        )
        ended = got.payload if isinstance(got.payload, dict) else {}
        if ended.get("status") != "complete":
            error = ended.get("error") or {}
            raise NonRetryableError(
                f"its child run {child_id} ended {ended.get('status')}: "
                f"{error.get('message') or error.get('name') or 'no reason given'}"
            )
        return await self.step.do(ref, _value, ended.get("output"))

    @contextlib.asynccontextmanager
    async def _slot(self) -> Any:
        if self.slots is None:
            yield
            return
        async with self.slots:
            yield


class _Compensation:
    """A job step's ``compensation_job_id``, run with the step's output when the run is
    compensated."""

    def __init__(self, services: GraphServices, tenant: str, job_id: str, s: GraphStep) -> None:
        self.services = services
        self.tenant = tenant
        self.job_id = job_id
        self.timeout_s = s.compensation_timeout_secs or DEFAULT_JOB_TIMEOUT_S

    async def __call__(self, ctx: RollbackContext) -> Any:
        payload = {"step_ref": ctx.step_name, "output": ctx.output}
        return await self.services.run_job(self.tenant, self.job_id, payload, self.timeout_s)


def _value(value: Any) -> Any:
    """A step's result that is already known (an approval, an event, a child's output)."""
    return value


def _ms(secs: int | None) -> int:
    return NO_TIMEOUT_MS if not secs else secs * 1000


def _text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else str(exc)
