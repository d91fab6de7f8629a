"""What a step's condition and templates read, checked against the graph when it is created."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.graph.conditions import Condition, parse_condition
from stepstone.graph.dag import Dag
from stepstone.graph.templates import check_template

MAX_PAYLOAD_DEPTH = 64


class _Step(Protocol):
    @property
    def step_ref(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def event_key(self) -> str | None: ...


def check_references(step: _Step, raw_condition: Any, dag: Dag) -> Condition | None:
    """Compile the step's condition and check its templates.

    A condition may read the status of any step upstream, and the outputs of the step's
    parents; a template may read its parents' outputs. Anything else would read a value that
    is not settled when the step becomes ready.

    Raises:
        WorkflowDefinitionError: naming the step, where, and what it reads.
    """
    step_ref, payload, event_key = step.step_ref, step.payload, step.event_key
    parents = dag.parents[step_ref]
    condition = None
    if raw_condition is not None and raw_condition != {}:
        condition = parse_condition(
            raw_condition,
            step_ref=step_ref,
            upstream=frozenset(dag.ancestors(step_ref)),
            parents=frozenset(parents),
        )
    templates = list(_strings(payload, "payload", step_ref))
    if event_key is not None:
        templates.append(("event_key", event_key))
    for where, text in templates:
        for ref in check_template(text, step_ref=step_ref, field=where):
            if ref not in parents:
                raise WorkflowDefinitionError(
                    f"step {step_ref!r}: {where}: template {text!r} reads "
                    f"parent_outputs.{ref}, but {ref!r} is not in its depends_on"
                )
    return condition


def _strings(value: Any, where: str, ref: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, with where it is (``payload.a[0].b``)."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise WorkflowDefinitionError(
            f"step {ref!r}: {where} nests deeper than {MAX_PAYLOAD_DEPTH} levels"
        )
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}", ref, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]", ref, depth + 1)
