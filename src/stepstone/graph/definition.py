"""Strait workflow definitions: frozen steps in Strait's field names, checked as a whole.

``parse_definition`` reads the JSON a client sends (``POST /v1/workflows``: ``steps`` and the
workflow's ``max_parallel_steps`` and ``timeout_secs``; other workflow fields are the API's) and
refuses, naming the step, anything that could not run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.domain.retry import Backoff, RetryPolicy
from stepstone.graph.conditions import Condition
from stepstone.graph.dag import Dag, build_dag
from stepstone.graph.fields import StepFields
from stepstone.graph.references import check_references
from stepstone.graph.vocabulary import (
    MAX_NESTING_DEPTH,
    MAX_RETRY_ATTEMPTS,
    MAX_SECONDS,
    MAX_STEPS,
    OnFailure,
    RetryBackoff,
    StepType,
)

MAX_STEP_REF = 255
_ALIASES = {"type": "step_type", "approvers": "approval_approvers"}  # strait-python's helpers
_HINTS = {  # names other products use for Strait's fields
    "retries": "retry_max_attempts, retry_backoff, retry_initial_delay_secs, retry_max_delay_secs",
    "timeout": "timeout_secs_override",
    "timeout_secs": "timeout_secs_override",
    "name": "step_ref",
    "dependencies": "depends_on",
}
_READ_ONLY = frozenset({"id", "workflow_id", "created_at"})  # in answers a client may echo
_BACKOFF = {
    RetryBackoff.FIXED: Backoff.CONSTANT,
    RetryBackoff.LINEAR: Backoff.LINEAR,
    RetryBackoff.EXPONENTIAL: Backoff.EXPONENTIAL,
}


@dataclass(frozen=True, slots=True)
class GraphStep:
    """One step, with the field names of Strait's ``WorkflowStepRequest``; ``None`` is unset."""

    step_ref: str
    step_type: StepType = StepType.JOB
    depends_on: tuple[str, ...] = ()
    job_id: str | None = None
    payload: Any = None
    condition: Condition | None = None
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW
    retry_max_attempts: int | None = None
    retry_backoff: RetryBackoff | None = None
    retry_initial_delay_secs: int | None = None
    retry_max_delay_secs: int | None = None
    timeout_secs_override: int | None = None
    approval_approvers: tuple[str, ...] = ()
    approval_timeout_secs: int | None = None
    sleep_duration_secs: int | None = None
    event_key: str | None = None
    event_timeout_secs: int | None = None
    event_notify_url: str | None = None
    event_emit_key: str | None = None
    sub_workflow_id: str | None = None
    max_nesting_depth: int | None = None
    compensation_job_id: str | None = None
    compensation_timeout_secs: int | None = None
    concurrency_key: str | None = None
    resource_class: str | None = None
    output_transform: str | None = None
    expected_duration_secs: int | None = None
    cost_gate_threshold_microusd: int | None = None
    cost_gate_timeout_secs: int | None = None
    cost_gate_default_action: str | None = None
    stage_notifications: Any = None

    def retry_policy(self, default: RetryPolicy | None = None) -> RetryPolicy:
        """The runtime's retry policy: ``default`` with the fields this step sets."""
        policy = default or RetryPolicy()
        return RetryPolicy(
            limit=policy.limit if self.retry_max_attempts is None else self.retry_max_attempts - 1,
            delay_ms=(
                policy.delay_ms
                if self.retry_initial_delay_secs is None
                else self.retry_initial_delay_secs * 1000
            ),
            backoff=policy.backoff if self.retry_backoff is None else _BACKOFF[self.retry_backoff],
            max_delay_ms=(
                policy.max_delay_ms
                if self.retry_max_delay_secs is None
                else self.retry_max_delay_secs * 1000
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """The step in the server's spelling (``step_type``, ``approval_approvers``)."""
        data: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, Condition):
                value = copy.deepcopy(value.raw)
            elif isinstance(value, StrEnum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            if (value is not None and value != []) or spec.name == "depends_on":
                data[spec.name] = copy.deepcopy(value)
        return data


@dataclass(frozen=True, slots=True)
class GraphDefinition:
    """A checked graph: steps in definition order, and the topology the interpreter walks."""

    steps: tuple[GraphStep, ...]
    max_parallel_steps: int | None = None
    timeout_secs: int | None = None
    dag: Dag = field(init=False, repr=False, compare=False)
    _by_ref: Mapping[str, GraphStep] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.steps:
            raise WorkflowDefinitionError("a workflow needs at least one step")
        if len(self.steps) > MAX_STEPS:
            raise WorkflowDefinitionError(
                f"a workflow has at most {MAX_STEPS:,} steps; this one has {len(self.steps):,}"
            )
        dag = build_dag([(step.step_ref, step.depends_on) for step in self.steps])
        object.__setattr__(self, "dag", dag)
        object.__setattr__(self, "_by_ref", {step.step_ref: step for step in self.steps})

    def __iter__(self) -> Iterator[GraphStep]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def step(self, ref: str) -> GraphStep:
        """The step ``ref``; ``NotFoundError`` if there is none."""
        return self._by_ref[self.dag.known(ref)]

    @property
    def refs(self) -> tuple[str, ...]:
        return self.dag.refs

    @property
    def roots(self) -> tuple[str, ...]:
        """Steps that start at once, in definition order."""
        return self.dag.roots

    @property
    def leaves(self) -> tuple[str, ...]:
        return self.dag.leaves

    @property
    def topological_order(self) -> tuple[str, ...]:
        """Every step after its dependencies; ties keep definition order. Deterministic."""
        return self.dag.order

    def parents(self, ref: str) -> tuple[str, ...]:
        """The distinct steps ``ref`` depends on, in ``depends_on`` order."""
        return self.dag.parents[self.dag.known(ref)]

    def children(self, ref: str) -> tuple[str, ...]:
        return self.dag.children[self.dag.known(ref)]

    def descendants(self, ref: str) -> tuple[str, ...]:
        """Everything downstream of ``ref``, topologically ordered (replay-subtree resets
        ``ref`` and these)."""
        return self.dag.descendants(ref)

    def ancestors(self, ref: str) -> tuple[str, ...]:
        return self.dag.ancestors(ref)

    def deps_required(self, ref: str) -> int:
        """How many steps must settle before ``ref`` may start (a step run's ``deps_required``)."""
        return len(self.parents(ref))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"steps": [step.to_json() for step in self.steps]}
        if self.max_parallel_steps is not None:
            data["max_parallel_steps"] = self.max_parallel_steps
        if self.timeout_secs is not None:
            data["timeout_secs"] = self.timeout_secs
        return data


def parse_definition(data: Mapping[str, Any]) -> GraphDefinition:
    """Read and check a workflow definition.

    Accepts the server's field names and the strait-python helpers' (``type`` for
    ``step_type``, ``approvers`` for ``approval_approvers``).

    Raises:
        WorkflowDefinitionError: (a ``ValidationError``) the definition cannot run; the message
            names the step and the problem: unknown dependency, cycle, duplicate ref, too many
            steps, unknown step type or ``on_failure``, bad retries, timeouts, conditions or
            templates.
    """
    if not isinstance(data, Mapping):
        raise WorkflowDefinitionError("a workflow definition is an object with a steps list")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise WorkflowDefinitionError("steps must be a non-empty list of steps")
    if len(raw_steps) > MAX_STEPS:
        raise WorkflowDefinitionError(
            f"a workflow has at most {MAX_STEPS:,} steps; this one has {len(raw_steps):,}"
        )
    workflow = StepFields(data, "workflow")
    max_parallel = workflow.whole("max_parallel_steps", low=1, high=MAX_STEPS)
    timeout = workflow.whole("timeout_secs", low=1, high=MAX_SECONDS)
    drafts = [_read_step(raw, i) for i, raw in enumerate(raw_steps)]
    dag = build_dag([(step.step_ref, step.depends_on) for step, _ in drafts])
    steps = tuple(
        replace(step, condition=check_references(step, raw_condition, dag))
        for step, raw_condition in drafts
    )
    return GraphDefinition(steps=steps, max_parallel_steps=max_parallel, timeout_secs=timeout)


def _read_step(raw: Any, index: int) -> tuple[GraphStep, Any]:
    """The step with every field but its condition, and the condition's raw JSON."""
    if not isinstance(raw, Mapping):
        raise WorkflowDefinitionError(f"steps[{index}] must be an object with a step_ref")
    ref = StepFields(raw, f"steps[{index}]").need_text("step_ref", "on every step")
    if len(ref) > MAX_STEP_REF or "/" in ref or "#" in ref or not ref.isprintable():
        raise WorkflowDefinitionError(
            f"steps[{index}]: step_ref {ref[:80]!r} must be 1 to {MAX_STEP_REF} printable "
            "characters without '/' (it appears in URL paths) or '#'"
        )
    f = StepFields(raw, f"step {ref!r}")
    f.refuse_unknown({spec.name for spec in fields(GraphStep)} | set(_ALIASES), _READ_ONLY, _HINTS)
    step_type = f.choice("step_type", StepType, StepType.JOB, f.either("step_type", "type"))
    attempts = f.whole("retry_max_attempts", low=1, high=MAX_RETRY_ATTEMPTS)
    initial_delay = f.whole(
        "retry_initial_delay_secs", low=0, high=MAX_SECONDS, zero_is_unset=False
    )
    max_delay = f.secs("retry_max_delay_secs")
    if max_delay is not None and initial_delay is not None and max_delay < initial_delay:
        raise f.fail(
            f"retry_max_delay_secs ({max_delay}) is less than retry_initial_delay_secs "
            f"({initial_delay})"
        )
    step = GraphStep(
        step_ref=ref,
        step_type=step_type,
        depends_on=f.strings("depends_on"),
        job_id=f.text("job_id", required="on a job step" if step_type is StepType.JOB else None),
        payload=copy.deepcopy(raw.get("payload")),
        on_failure=f.choice("on_failure", OnFailure, OnFailure.FAIL_WORKFLOW),
        retry_max_attempts=attempts,
        retry_backoff=f.optional_choice("retry_backoff", RetryBackoff),
        retry_initial_delay_secs=initial_delay,
        retry_max_delay_secs=max_delay,
        timeout_secs_override=f.secs("timeout_secs_override"),
        approval_approvers=f.strings(
            "approval_approvers", f.either("approval_approvers", "approvers")
        ),
        approval_timeout_secs=f.secs("approval_timeout_secs"),
        sleep_duration_secs=f.whole(
            "sleep_duration_secs",
            low=0,
            high=MAX_SECONDS,
            zero_is_unset=False,
            required="on a sleep step" if step_type is StepType.SLEEP else None,
        ),
        event_key=f.text(
            "event_key",
            required="on a wait_for_event step" if step_type is StepType.WAIT_FOR_EVENT else None,
        ),
        event_timeout_secs=f.secs("event_timeout_secs"),
        event_notify_url=f.text("event_notify_url"),
        event_emit_key=f.text("event_emit_key"),
        sub_workflow_id=f.text(
            "sub_workflow_id",
            required="on a sub_workflow step" if step_type is StepType.SUB_WORKFLOW else None,
        ),
        max_nesting_depth=f.whole("max_nesting_depth", low=1, high=MAX_NESTING_DEPTH),
        compensation_job_id=f.text("compensation_job_id"),
        compensation_timeout_secs=f.secs("compensation_timeout_secs"),
        concurrency_key=f.text("concurrency_key"),
        resource_class=f.text("resource_class"),
        output_transform=f.text("output_transform"),
        expected_duration_secs=f.secs("expected_duration_secs"),
        cost_gate_threshold_microusd=f.whole(
            "cost_gate_threshold_microusd", low=0, high=10**15, zero_is_unset=False
        ),
        cost_gate_timeout_secs=f.secs("cost_gate_timeout_secs"),
        cost_gate_default_action=f.text("cost_gate_default_action"),
        stage_notifications=copy.deepcopy(raw.get("stage_notifications")),
    )
    return step, raw.get("condition")
