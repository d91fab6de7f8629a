"""Graph workflows (Strait's definitions): steps, topology, conditions, templates, step inputs.

Pure code: no I/O and no database. The durable interpreter drives it.
"""

from stepstone.graph.conditions import (
    CONDITION_TYPES,
    Condition,
    ConditionContext,
    parse_condition,
)
from stepstone.graph.dag import Dag, build_dag
from stepstone.graph.definition import GraphDefinition, GraphStep, parse_definition
from stepstone.graph.inputs import (
    condition_context,
    parent_outputs_of,
    render_event_key,
    render_payload,
    should_run,
    step_input,
)
from stepstone.graph.templates import TemplateRenderError, render_text, render_value
from stepstone.graph.vocabulary import (
    MAX_NESTING_DEPTH,
    MAX_STEPS,
    OnFailure,
    RetryBackoff,
    StepRunStatus,
    StepType,
)

__all__ = [
    "CONDITION_TYPES",
    "MAX_NESTING_DEPTH",
    "MAX_STEPS",
    "Condition",
    "ConditionContext",
    "Dag",
    "GraphDefinition",
    "GraphStep",
    "OnFailure",
    "RetryBackoff",
    "StepRunStatus",
    "StepType",
    "TemplateRenderError",
    "build_dag",
    "condition_context",
    "parent_outputs_of",
    "parse_condition",
    "parse_definition",
    "render_event_key",
    "render_payload",
    "render_text",
    "render_value",
    "should_run",
    "step_input",
]
