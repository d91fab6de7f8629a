"""Parsing definitions: Strait's field names, the SDK's spellings, and clear refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepstone.domain.errors import ValidationError, WorkflowDefinitionError
from stepstone.domain.retry import Backoff, RetryPolicy
from stepstone.graph import (
    GraphStep,
    OnFailure,
    RetryBackoff,
    StepType,
    parse_definition,
)


def one(**step: Any) -> GraphStep:
    return parse_definition({"steps": [{"step_ref": "s", **step}]}).step("s")


def refused(*steps: dict[str, Any], **workflow: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_definition({"steps": list(steps), **workflow})
    assert isinstance(caught.value, WorkflowDefinitionError)
    return caught.value.message


def test_every_step_type_with_its_fields() -> None:
    graph = parse_definition(
        {
            "max_parallel_steps": 4,
            "timeout_secs": 3600,
            "name": "ignored here: the API reads the workflow's own fields",
            "steps": [
                {
                    "step_ref": "charge",
                    "step_type": "job",
                    "job_id": "billing.charge",
                    "payload": {"amount": "{{ payload.amount }}"},
                    "retry_max_attempts": 5,
                    "retry_backoff": "exponential",
                    "retry_initial_delay_secs": 2,
                    "retry_max_delay_secs": 60,
                    "timeout_secs_override": 120,
                    "on_failure": "compensate",
                    "compensation_job_id": "billing.refund",
                    "compensation_timeout_secs": 30,
                },
                {
                    "step_ref": "review",
                    "step_type": "approval",
                    "depends_on": ["charge"],
                    "approval_approvers": ["ops@example.com"],
                    "approval_timeout_secs": 86400,
                },
                {
                    "step_ref": "cool-off",
                    "step_type": "sleep",
                    "depends_on": ["review"],
                    "sleep_duration_secs": 30,
                },
                {
                    "step_ref": "shipped",
                    "step_type": "wait_for_event",
                    "depends_on": ["cool-off"],
                    "event_key": "shipped-{{ payload.order_id }}",
                    "event_timeout_secs": 600,
                    "event_notify_url": "https://example.com/hook",
                },
                {
                    "step_ref": "invoice",
                    "step_type": "sub_workflow",
                    "depends_on": ["shipped"],
                    "sub_workflow_id": "wf_invoice",
                    "max_nesting_depth": 3,
                    "on_failure": "continue",
                },
            ],
        }
    )
    assert graph.max_parallel_steps == 4
    assert graph.timeout_secs == 3600
    assert [step.step_type for step in graph] == list(StepType)
    charge = graph.step("charge")
    assert charge.on_failure is OnFailure.COMPENSATE
    assert charge.retry_backoff is RetryBackoff.EXPONENTIAL
    assert (charge.retry_max_attempts, charge.timeout_secs_override) == (5, 120)
    assert graph.step("review").approval_approvers == ("ops@example.com",)
    assert graph.step("cool-off").sleep_duration_secs == 30
    assert graph.step("shipped").event_key == "shipped-{{ payload.order_id }}"
    assert graph.step("invoice").max_nesting_depth == 3
    assert graph.step("review").on_failure is OnFailure.FAIL_WORKFLOW


def test_defaults() -> None:
    step = one(job_id="j")
    assert step == GraphStep("s", job_id="j")
    assert step.step_type is StepType.JOB
    assert step.on_failure is OnFailure.FAIL_WORKFLOW
    assert step.depends_on == ()
    assert step.condition is None


def test_the_sdk_helpers_spellings_are_accepted() -> None:
    """strait-python's step_to_api writes ``type`` and ``approvers``."""
    sdk_step = {"step_ref": "s", "type": "approval", "approvers": ["a", "b"]}
    step = parse_definition({"steps": [sdk_step]}).step("s")
    assert step.step_type is StepType.APPROVAL
    assert step.approval_approvers == ("a", "b")
    both = one(type="sleep", step_type="sleep", sleep_duration_secs=1)
    assert both.step_type is StepType.SLEEP


def test_go_zero_values_mean_unset() -> None:
    step = one(
        job_id="j",
        on_failure="",
        step_type="",
        retry_backoff="",
        retry_max_attempts=0,
        timeout_secs_override=0,
        max_nesting_depth=0,
        event_key="",
        depends_on=None,
        approval_approvers=None,
        condition=None,
    )
    assert step == GraphStep("s", job_id="j")


def test_integral_floats_are_whole_numbers() -> None:
    assert one(job_id="j", timeout_secs_override=30.0).timeout_secs_override == 30


def test_read_only_fields_of_an_answer_are_ignored() -> None:
    echoed = {"id": "st_1", "workflow_id": "wf_1", "created_at": "2024-01-01T00:00:00Z"}
    assert one(job_id="j", **echoed) == GraphStep("s", job_id="j")


def test_to_json_round_trips_in_the_servers_spelling() -> None:
    raw = {
        "steps": [
            {"step_ref": "a", "job_id": "j", "payload": {"x": [1, "{{ payload.y }}"]}},
            {
                "step_ref": "b",
                "type": "approval",
                "approvers": ["ops"],
                "depends_on": ["a"],
                "condition": {"type": "step_status", "step_ref": "a", "status": "completed"},
            },
        ],
        "max_parallel_steps": 2,
    }
    graph = parse_definition(raw)
    data = graph.to_json()
    json.dumps(data)  # plain JSON, enums as their words
    assert data["steps"][1] == {
        "step_ref": "b",
        "step_type": "approval",
        "depends_on": ["a"],
        "condition": {"type": "step_status", "step_ref": "a", "status": "completed"},
        "on_failure": "fail_workflow",
        "approval_approvers": ["ops"],
    }
    assert data["steps"][0]["depends_on"] == []
    assert parse_definition(data) == graph


def test_the_definition_keeps_its_own_copy() -> None:
    payload = {"x": [1]}
    graph = parse_definition({"steps": [{"step_ref": "a", "job_id": "j", "payload": payload}]})
    payload["x"].append(2)
    assert graph.step("a").payload == {"x": [1]}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, RetryPolicy()),
        ({"retry_max_attempts": 3}, RetryPolicy(limit=2)),
        (
            {"retry_max_attempts": 1, "retry_backoff": "fixed", "retry_initial_delay_secs": 0},
            RetryPolicy(limit=0, delay_ms=0, backoff=Backoff.CONSTANT),
        ),
        (
            {"retry_backoff": "linear", "retry_initial_delay_secs": 4},
            RetryPolicy(delay_ms=4_000, backoff=Backoff.LINEAR),
        ),
        (
            {"retry_initial_delay_secs": 1, "retry_max_delay_secs": 30},
            RetryPolicy(delay_ms=1_000, max_delay_ms=30_000),
        ),
    ],
)
def test_retry_policy_for_the_runtime(fields: dict[str, Any], expected: RetryPolicy) -> None:
    assert one(job_id="j", **fields).retry_policy() == expected


def test_retry_policy_starts_from_a_given_default() -> None:
    default = RetryPolicy(limit=0, delay_ms=1, backoff=Backoff.LINEAR)
    assert one(job_id="j").retry_policy(default) == default


def test_a_thousand_steps_but_not_more() -> None:
    steps = [{"step_ref": f"s{i}", "job_id": "j"} for i in range(1_001)]
    assert len(parse_definition({"steps": steps[:1_000]})) == 1_000
    assert "at most 1,000 steps; this one has 1,001" in refused(*steps)


S = {"step_ref": "s", "job_id": "j"}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"job_id": "j"}, r"steps\[0\]: step_ref is required on every step"),
        ({"step_ref": "", "job_id": "j"}, r"steps\[0\]: step_ref is required"),
        ({"step_ref": 7}, r"steps\[0\]: step_ref must be a string, not a number"),
        ({"step_ref": "a/b", "job_id": "j"}, "without '/'"),
        ({"step_ref": "a\nb", "job_id": "j"}, "printable"),
        ({"step_ref": "x" * 256, "job_id": "j"}, "1 to 255"),
        ({"step_ref": "s"}, "step 's': job_id is required on a job step"),
        ({"step_ref": "s", "step_type": "webhook"}, "unknown step_type 'webhook'; use one of job"),
        ({"step_ref": "s", "type": "cron"}, "unknown step_type 'cron'"),
        ({"step_ref": "s", "type": "job", "step_type": "sleep"}, "disagree"),
        ({"step_ref": "s", "step_type": "sleep"}, "sleep_duration_secs is required on a sleep"),
        ({"step_ref": "s", "step_type": "wait_for_event"}, "event_key is required"),
        ({"step_ref": "s", "step_type": "sub_workflow"}, "sub_workflow_id is required"),
        ({**S, "on_failure": "retry"}, "unknown on_failure 'retry'; use one of fail_workflow, "),
        ({**S, "on_failure": "compensate", "retry_backoff": "random"}, "unknown retry_backoff"),
        ({**S, "retry_max_attempts": -1}, "retry_max_attempts must be a whole number from 1 to"),
        ({**S, "retry_max_attempts": 101}, "retry_max_attempts must be a whole number"),
        ({**S, "retry_max_attempts": 2.5}, "retry_max_attempts must be a whole number"),
        ({**S, "retry_max_attempts": True}, "retry_max_attempts must be a whole number"),
        ({**S, "retry_max_attempts": "3"}, "retry_max_attempts must be a whole number"),
        ({**S, "retry_initial_delay_secs": -5}, "retry_initial_delay_secs must be"),
        (
            {**S, "retry_initial_delay_secs": 10, "retry_max_delay_secs": 5},
            r"retry_max_delay_secs \(5\) is less than retry_initial_delay_secs \(10\)",
        ),
        ({**S, "timeout_secs_override": -1}, "timeout_secs_override must be a whole number from 1"),
        ({**S, "timeout_secs_override": 10**12}, "timeout_secs_override must be"),
        ({**S, "timeout_secs_override": float("inf")}, "timeout_secs_override must be"),
        ({**S, "approval_timeout_secs": "1h"}, "approval_timeout_secs must be"),
        ({**S, "event_timeout_secs": -3}, "event_timeout_secs must be"),
        ({"step_ref": "s", "step_type": "sleep", "sleep_duration_secs": -1}, "sleep_duration_secs"),
        ({**S, "max_nesting_depth": 11}, "max_nesting_depth must be a whole number from 1 to 10"),
        ({**S, "depends_on": "a"}, "depends_on must be a list of strings, not a string"),
        ({**S, "depends_on": [1]}, "depends_on must be a list of strings"),
        ({**S, "approvers": [""]}, "approval_approvers must not hold an empty string"),
        ({**S, "job_id": "a\x00b"}, "job_id must not contain a NUL"),
        ({**S, "job_id": {"id": 1}}, "job_id must be a string, not an object"),
        ({**S, "retries": 3}, "unknown field 'retries' \\(did you mean retry_max_attempts"),
        ({**S, "timeout": 3}, "unknown field 'timeout' \\(did you mean timeout_secs_override"),
        ({**S, "depend_on": ["x"]}, "unknown field 'depend_on' \\(did you mean 'depends_on'"),
    ],
)
def test_bad_steps_are_refused_naming_the_step(step: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        parse_definition({"steps": [step]})


def test_deeply_nested_payload_is_refused() -> None:
    payload: Any = "x"
    for _ in range(70):
        payload = [payload]
    assert "nests deeper than 64 levels" in refused({**S, "payload": payload})


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        ({"steps": []}, "steps must be a non-empty list"),
        ({"steps": None}, "steps must be a non-empty list"),
        ({"steps": {"a": {}}}, "steps must be a non-empty list"),
        ({"steps": ["a"]}, r"steps\[0\] must be an object"),
        ({"steps": [S], "max_parallel_steps": -2}, "workflow: max_parallel_steps must be"),
        ({"steps": [S], "timeout_secs": "soon"}, "workflow: timeout_secs must be"),
    ],
)
def test_bad_workflows_are_refused(workflow: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        parse_definition(workflow)


def test_not_a_mapping() -> None:
    with pytest.raises(WorkflowDefinitionError, match="an object with a steps list"):
        parse_definition([S])  # type: ignore[arg-type]


def test_a_bad_condition_is_refused_when_the_definition_is_created() -> None:
    message = refused(
        {"step_ref": "a", "job_id": "j"},
        {"step_ref": "b", "job_id": "j", "depends_on": ["a"], "condition": {"type": "eqq"}},
    )
    assert message.startswith("step 'b': condition: unknown condition type 'eqq'")


def test_a_condition_may_read_only_upstream_steps() -> None:
    a = {"step_ref": "a", "job_id": "j"}
    side = {"step_ref": "side", "job_id": "j"}
    reads_side = {"type": "step_status", "step_ref": "side", "status": "completed"}
    message = refused(a, side, {**S, "depends_on": ["a"], "condition": reads_side})
    assert "reads the status of 'side', which is not upstream" in message
    grandparent = {"type": "step_status", "step_ref": "a", "status": "completed"}
    middle = {"step_ref": "m", "job_id": "j", "depends_on": ["a"]}
    parse_definition({"steps": [a, middle, {**S, "depends_on": ["m"], "condition": grandparent}]})


def test_templates_are_checked_when_the_definition_is_created() -> None:
    message = refused({**S, "payload": {"x": ["ok", "{{ payload.x "]}})
    assert message.startswith("step 's': payload.x[1]: template '{{ payload.x ':")
    message = refused({**S, "payload": "{{ payload | no_such_filter }}"})
    assert "No filter named 'no_such_filter'" in message
    message = refused({**S, "payload": "{{ ''.__class__ }}"})
    assert "'__class__' is not readable here" in message
    message = refused(
        {"step_ref": "s", "step_type": "wait_for_event", "event_key": "k-{% if %}"},
    )
    assert message.startswith("step 's': event_key: template 'k-{% if %}'")


def test_templates_may_read_only_their_parents_outputs() -> None:
    a = {"step_ref": "a", "job_id": "j"}
    b = {"step_ref": "b", "job_id": "j", "depends_on": ["a"]}
    reads_a = {**S, "depends_on": ["b"], "payload": {"v": "{{ parent_outputs.a.v }}"}}
    message = refused(a, b, reads_a)
    assert "reads parent_outputs.a, but 'a' is not in its depends_on" in message
    by_item = {**S, "depends_on": ["b"], "payload": "{{ parent_outputs['a'].v }}"}
    assert "'a' is not in its depends_on" in refused(a, b, by_item)
    fine = {**S, "depends_on": ["a", "b"], "payload": "{{ parent_outputs['a'].v }}"}
    parse_definition({"steps": [a, b, fine]})
