"""What a step receives: the trigger payload, its own rendered payload and its parents' outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepstone.graph.conditions import ConditionContext
from stepstone.graph.definition import GraphStep
from stepstone.graph.templates import render_text, render_value, template_context


def parent_outputs_of(step: GraphStep, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs of ``step``'s parents, by ref; a parent without an output (skipped) is null."""
    return {ref: outputs.get(ref) for ref in dict.fromkeys(step.depends_on)}


def render_payload(step: GraphStep, trigger_payload: Any, outputs: Mapping[str, Any]) -> Any:
    """``step.payload`` with its templates rendered (``TemplateRenderError`` if one fails)."""
    context = template_context(trigger_payload, parent_outputs_of(step, outputs))
    return render_value(step.payload, context, step_ref=step.step_ref, field="payload")


def render_event_key(step: GraphStep, trigger_payload: Any, outputs: Mapping[str, Any]) -> str:
    """A ``wait_for_event`` step's ``event_key`` with its templates rendered, as Strait does."""
    context = template_context(trigger_payload, parent_outputs_of(step, outputs))
    return render_text(step.event_key or "", context, step_ref=step.step_ref, field="event_key")


def step_input(step: GraphStep, trigger_payload: Any, outputs: Mapping[str, Any]) -> Any:
    """The input a step runs with (a job's argument, a child run's payload), as Strait builds it.

    Precedence, lowest first, when the trigger payload and the step's payload are both objects
    (or absent):

    1. the trigger payload's keys;
    2. the step's own payload, rendered (its keys win over the trigger payload's);
    3. ``"parent_outputs"``: ``{parent_ref: output}`` for every step in ``depends_on`` (null for
       a parent without output), present only when the step has parents; it replaces any
       ``parent_outputs`` key of the payloads.

    When either payload is not an object (a list, a string, a number) nothing is merged: the
    step's rendered payload is the input if it has one, else the trigger payload.

    Args:
        step: the step about to run.
        trigger_payload: the run's payload.
        outputs: completed steps' outputs by ref (at least the step's parents').

    Raises:
        TemplateRenderError: a template in the step's payload cannot be rendered.
    """
    own = render_payload(step, trigger_payload, outputs)
    trigger_is_object = trigger_payload is None or isinstance(trigger_payload, Mapping)
    own_is_object = own is None or isinstance(own, Mapping)
    if not (trigger_is_object and own_is_object):
        return own if own is not None else trigger_payload
    merged: dict[str, Any] = {**(trigger_payload or {}), **(own or {})}
    if step.depends_on:
        merged["parent_outputs"] = parent_outputs_of(step, outputs)
    return merged


def condition_context(
    step: GraphStep,
    trigger_payload: Any,
    outputs: Mapping[str, Any],
    statuses: Mapping[str, str],
) -> ConditionContext:
    """What ``step.condition`` reads: the payload, its parents' outputs, every step's status."""
    return ConditionContext(
        payload=trigger_payload,
        parent_outputs=parent_outputs_of(step, outputs),
        step_statuses=statuses,
    )


def should_run(
    step: GraphStep,
    trigger_payload: Any,
    outputs: Mapping[str, Any],
    statuses: Mapping[str, str],
) -> bool:
    """False when the step's condition is false (the step is then skipped); true without one."""
    if step.condition is None:
        return True
    return step.condition.evaluate(condition_context(step, trigger_payload, outputs, statuses))
