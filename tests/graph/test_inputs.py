"""A step's input: trigger payload, then its own rendered payload, then its parents' outputs."""

from __future__ import annotations

from typing import Any

import pytest

from stepstone.graph import (
    GraphDefinition,
    TemplateRenderError,
    parse_definition,
    render_event_key,
    should_run,
    step_input,
)


def graph(*steps: dict[str, Any]) -> GraphDefinition:
    return parse_definition({"steps": list(steps)})


ROOT = {"step_ref": "load", "job_id": "j"}


def test_a_root_step_gets_the_trigger_payload_under_its_own_payload() -> None:
    step = graph({**ROOT, "payload": {"region": "eu", "id": "{{ payload.id }}"}}).step("load")
    got = step_input(step, {"id": 42, "region": "us", "extra": True}, {})
    assert got == {"id": 42, "region": "eu", "extra": True}
    assert "parent_outputs" not in got


def test_parents_outputs_arrive_under_parent_outputs() -> None:
    g = graph(
        ROOT,
        {"step_ref": "price", "job_id": "j"},
        {
            "step_ref": "charge",
            "job_id": "j",
            "depends_on": ["load", "price"],
            "payload": {"total": "{{ parent_outputs.price.total }}", "parent_outputs": "lost"},
        },
    )
    outputs = {"load": {"items": 2}, "price": {"total": 9.5}, "unrelated": {"x": 1}}
    got = step_input(g.step("charge"), {"currency": "EUR", "parent_outputs": "lost too"}, outputs)
    assert got == {
        "currency": "EUR",
        "total": 9.5,
        "parent_outputs": {"load": {"items": 2}, "price": {"total": 9.5}},
    }


def test_a_parent_without_output_is_null() -> None:
    g = graph(ROOT, {"step_ref": "next", "job_id": "j", "depends_on": ["load"]})
    assert step_input(g.step("next"), None, {}) == {"parent_outputs": {"load": None}}


@pytest.mark.parametrize(
    ("trigger", "own", "expected"),
    [
        (None, None, {}),
        ({"a": 1}, None, {"a": 1}),
        (None, {"b": 2}, {"b": 2}),
        ([1, 2], None, [1, 2]),
        ([1, 2], {"b": 2}, {"b": 2}),
        ({"a": 1}, ["x"], ["x"]),
        ("text", None, "text"),
        ({"a": 1}, "{{ payload.a }}", 1),
        (7, "{{ payload }}", 7),
    ],
)
def test_what_is_not_an_object_is_not_merged(trigger: Any, own: Any, expected: Any) -> None:
    step = graph({**ROOT, "payload": own}).step("load")
    assert step_input(step, trigger, {}) == expected


def test_a_template_error_is_raised_with_the_step_named() -> None:
    step = graph({**ROOT, "payload": {"id": "{{ payload.id }}"}}).step("load")
    with pytest.raises(TemplateRenderError, match=r"^step 'load': payload.id: template"):
        step_input(step, {}, {})


def test_the_event_key_is_rendered_against_the_payload() -> None:
    step = graph(
        {"step_ref": "wait", "step_type": "wait_for_event", "event_key": "paid-{{ order_id }}"}
    ).step("wait")
    assert render_event_key(step, {"order_id": "o-1"}, {}) == "paid-o-1"


def test_should_run_evaluates_the_condition() -> None:
    g = graph(
        ROOT,
        {
            "step_ref": "big",
            "job_id": "j",
            "depends_on": ["load"],
            "condition": {
                "type": "all_of",
                "conditions": [
                    {"type": "step_status", "step_ref": "load", "status": "completed"},
                    {"type": "gt", "left": {"path": "parent_outputs.load.total"}, "right": 100},
                    {"type": "eq", "left": {"path": "payload.mode"}, "right": "live"},
                ],
            },
        },
    )
    big = g.step("big")
    done = {"load": "completed"}
    assert should_run(big, {"mode": "live"}, {"load": {"total": 150}}, done)
    assert not should_run(big, {"mode": "live"}, {"load": {"total": 50}}, done)
    assert not should_run(big, {"mode": "test"}, {"load": {"total": 150}}, done)
    assert not should_run(big, {"mode": "live"}, {"load": {"total": 150}}, {"load": "failed"})
    assert should_run(g.step("load"), None, {}, {})
