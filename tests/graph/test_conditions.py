"""Condition trees: Strait's shapes and operators, paths into data, refusals at parse time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.graph import CONDITION_TYPES, ConditionContext, parse_condition
from stepstone.graph.conditions import json_equal

CONTEXT = ConditionContext(
    payload={"amount": 120, "tier": "gold", "tags": ["vip", "eu"], "note": None, "ok": True},
    parent_outputs={"fetch": {"count": 3, "items": [{"id": "a"}, {"id": "b"}]}, "skipped": None},
    step_statuses={"fetch": "completed", "check": "failed", "skipped": "skipped"},
)


def holds(tree: Any, context: ConditionContext = CONTEXT) -> bool:
    return parse_condition(tree).evaluate(context)


def path(text: str) -> dict[str, str]:
    return {"path": text}


def status(ref: str, value: str) -> dict[str, str]:
    return {"type": "step_status", "step_ref": ref, "status": value}


TRUE = status("fetch", "completed")
FALSE = status("fetch", "failed")


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        # Strait's step status nodes
        (TRUE, True),
        (FALSE, False),
        (status("check", "failed"), True),
        ({"type": "step_status_in", "step_ref": "check", "statuses": ["failed", "canceled"]}, True),
        ({"type": "step_status_in", "step_ref": "check", "statuses": []}, False),
        ({"type": "step_status_in", "step_ref": "fetch", "statuses": ["failed"]}, False),
        # combinators, with Strait's empty cases
        ({"type": "all_of", "conditions": [TRUE, TRUE]}, True),
        ({"type": "all_of", "conditions": [TRUE, FALSE]}, False),
        ({"type": "all_of", "conditions": []}, True),
        ({"type": "all_of"}, True),
        ({"type": "any_of", "conditions": [FALSE, TRUE]}, True),
        ({"type": "any_of", "conditions": [FALSE, FALSE]}, False),
        ({"type": "any_of", "conditions": []}, False),
        ({"type": "not", "condition": FALSE}, True),
        ({"type": "not", "condition": {"type": "not", "condition": TRUE}}, True),
        # comparisons of literals and of Strait's {"step_ref"} and {"value"} operands
        ({"type": "eq", "left": {"step_ref": "fetch"}, "right": "completed"}, True),
        ({"type": "ne", "left": {"step_ref": "fetch"}, "right": {"value": "failed"}}, True),
        ({"type": "eq", "left": 1, "right": 1.0}, True),
        ({"type": "eq", "left": 1, "right": "1"}, False),
        ({"type": "eq", "left": True, "right": 1}, False),
        ({"type": "eq", "left": {"value": {"a": [1]}}, "right": {"value": {"a": [1.0]}}}, True),
        ({"type": "eq", "left": path("payload.note"), "right": None}, True),
        ({"type": "eq", "left": path("payload.missing"), "right": None}, True),
        # paths into the payload and the parents' outputs
        ({"type": "gt", "left": path("payload.amount"), "right": 100}, True),
        ({"type": "gte", "left": path("payload.amount"), "right": 120}, True),
        ({"type": "lt", "left": path("payload.amount"), "right": 120}, False),
        ({"type": "lte", "left": path("parent_outputs.fetch.count"), "right": 3}, True),
        ({"type": "gt", "left": "b", "right": "a"}, True),
        ({"type": "gt", "left": path("payload.tier"), "right": 5}, False),
        ({"type": "gt", "left": path("payload.missing"), "right": 5}, False),
        ({"type": "lt", "left": path("payload.ok"), "right": 5}, False),
        ({"type": "eq", "left": path("parent_outputs.fetch.items.1.id"), "right": "b"}, True),
        (
            {
                "type": "eq",
                "left": {"path": ["parent_outputs", "fetch", "items", 0, "id"]},
                "right": "a",
            },
            True,
        ),
        ({"type": "exists", "operand": path("parent_outputs.fetch.items.9")}, False),
        ({"type": "exists", "operand": path("payload.tier.deeper")}, False),
        ({"type": "exists", "operand": path("parent_outputs.skipped")}, False),
        ({"type": "exists", "operand": path("payload.note")}, False),
        ({"type": "exists", "operand": path("payload.tags")}, True),
        ({"type": "exists", "operand": {"step_ref": "fetch"}}, True),
        ({"type": "exists", "operand": 0}, True),
        # membership
        ({"type": "in", "left": path("payload.tier"), "right": ["gold", "silver"]}, True),
        ({"type": "in", "left": 2, "right": [1.0, 2.0]}, True),
        ({"type": "not_in", "left": path("payload.tier"), "right": ["bronze"]}, True),
        ({"type": "not_in", "left": path("payload.tier"), "right": ["gold"]}, False),
        ({"type": "in", "left": "ol", "right": path("payload.tier")}, True),
        ({"type": "in", "left": "x", "right": path("payload.amount")}, False),
        ({"type": "contains", "left": path("payload.tags"), "right": "vip"}, True),
        ({"type": "contains", "left": path("payload.tier"), "right": "ol"}, True),
        ({"type": "contains", "left": path("payload"), "right": "tier"}, True),
        ({"type": "contains", "left": path("payload.amount"), "right": 1}, False),
        # regex (search, as Go's MatchString)
        ({"type": "regex", "left": path("payload.tier"), "right": "^go"}, True),
        ({"type": "regex", "left": path("payload.tier"), "right": "^ld"}, False),
        ({"type": "regex", "left": path("payload.amount"), "right": "1"}, False),
        ({"type": "regex", "left": "a", "right": path("payload.tier")}, False),
    ],
)
def test_operators(tree: dict[str, Any], expected: bool) -> None:
    assert holds(tree) is expected


def test_every_type_is_covered_above() -> None:
    assert set(CONDITION_TYPES) == {
        "step_status",
        "step_status_in",
        "all_of",
        "any_of",
        "not",
        "exists",
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "in",
        "not_in",
        "regex",
    }


def test_an_unknown_status_of_a_step_is_no_match_not_an_error() -> None:
    empty = ConditionContext()
    assert holds(TRUE, empty) is False
    assert holds({"type": "not", "condition": TRUE}, empty) is True
    assert holds({"type": "exists", "operand": path("payload.x")}, empty) is False


def test_the_raw_tree_is_kept_for_answers() -> None:
    tree: dict[str, Any] = {"type": "all_of", "conditions": [TRUE]}
    condition = parse_condition(tree)
    tree["conditions"].append(FALSE)
    assert condition.raw == {"type": "all_of", "conditions": [TRUE]}
    assert condition.evaluate(CONTEXT) is True


def test_regex_input_is_bounded() -> None:
    long = ConditionContext(payload={"text": "a" * 20_000})
    assert holds({"type": "regex", "left": path("payload.text"), "right": "a"}, long) is False


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ("eq", "condition: a condition is an object"),
        ({}, "unknown condition type None; use one of step_status, "),
        ({"type": "equals"}, "unknown condition type 'equals'"),
        ({"type": "eq", "left": 1}, "condition: eq needs right"),
        ({"type": "eq", "left": 1, "right": 2, "rigth": 3}, "eq takes left, right, not rigth"),
        ({"type": "step_status", "status": "completed"}, "step_status needs step_ref"),
        ({"type": "step_status", "step_ref": "", "status": "completed"}, "step_ref must be"),
        (status("fetch", "complete"), "unknown step status 'complete'; use one of pending, "),
        ({"type": "step_status_in", "step_ref": "a", "statuses": "failed"}, "must be a list"),
        ({"type": "all_of", "conditions": {"type": "eq"}}, "all_of.conditions must be a list"),
        (
            {"type": "any_of", "conditions": [TRUE, {"type": "nope"}]},
            r"condition.conditions\[1\]: unknown condition type 'nope'",
        ),
        ({"type": "not"}, "not needs condition"),
        ({"type": "not", "condition": [TRUE]}, "condition.condition: a condition is an object"),
        ({"type": "exists"}, "exists needs operand"),
        ({"type": "eq", "left": {"a": 1}, "right": 1}, r"condition.left: an operand object is"),
        ({"type": "eq", "left": {"value": 1, "path": "x"}, "right": 1}, "an operand object"),
        ({"type": "eq", "left": path("outputs.a"), "right": 1}, "must start with payload or"),
        ({"type": "eq", "left": path("payload..a"), "right": 1}, "must start with payload or"),
        (
            {"type": "eq", "left": path("parent_outputs"), "right": 1},
            "path names the parent: parent_outputs.<ref>",
        ),
        ({"type": "eq", "left": {"path": 7}, "right": 1}, "path is a string"),
        ({"type": "in", "left": 1, "right": 1}, "in needs a list on the right"),
        ({"type": "not_in", "left": 1, "right": "abc"}, "not_in needs a list on the right"),
        ({"type": "gt", "left": 1, "right": [1]}, r"gt compares numbers \(or strings\)"),
        ({"type": "gt", "left": 1, "right": True}, "gt compares numbers"),
        ({"type": "regex", "left": "a", "right": "("}, "invalid regex '\\('"),
        ({"type": "regex", "left": "a", "right": 3}, "regex needs a pattern string"),
        ({"type": "regex", "left": "a", "right": "a" * 1_001}, "regex needs a pattern string"),
    ],
)
def test_malformed_trees_are_refused(tree: Any, message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        parse_condition(tree, step_ref="s")


def test_messages_name_the_step() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"^step 'ship': condition: unknown"):
        parse_condition({"type": "maybe"}, step_ref="ship")


def test_references_are_checked_against_the_graph() -> None:
    reads_status = {"type": "eq", "left": {"step_ref": "other"}, "right": "completed"}
    with pytest.raises(WorkflowDefinitionError, match="'other', which is not upstream"):
        parse_condition(reads_status, step_ref="s", upstream={"a"}, parents={"a"})
    reads_output = {"type": "exists", "operand": path("parent_outputs.grand.x")}
    with pytest.raises(WorkflowDefinitionError, match="'grand', which is not in this step's"):
        parse_condition(reads_output, step_ref="s", upstream={"grand", "a"}, parents={"a"})
    parse_condition(reads_output, step_ref="s", upstream={"grand"}, parents={"grand"})


def test_trees_are_bounded() -> None:
    deep: dict[str, Any] = TRUE
    for _ in range(40):
        deep = {"type": "not", "condition": deep}
    with pytest.raises(WorkflowDefinitionError, match="nests at most 32 deep"):
        parse_condition(deep)
    wide = {"type": "all_of", "conditions": [TRUE] * 600}
    with pytest.raises(WorkflowDefinitionError, match="500 nodes"):
        parse_condition(wide)


# -- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
leaves = st.sampled_from([TRUE, FALSE, status("check", "failed"), status("check", "completed")])
trees = st.recursive(
    leaves,
    lambda inner: (
        st.builds(lambda c: {"type": "not", "condition": c}, inner)
        | st.builds(lambda cs: {"type": "all_of", "conditions": cs}, st.lists(inner, max_size=3))
        | st.builds(lambda cs: {"type": "any_of", "conditions": cs}, st.lists(inner, max_size=3))
    ),
    max_leaves=10,
)


@given(trees)
def test_combinators_are_boolean_algebra(tree: dict[str, Any]) -> None:
    value = holds(tree)
    assert holds({"type": "not", "condition": tree}) is (not value)
    assert holds({"type": "all_of", "conditions": [tree, TRUE]}) is value
    assert holds({"type": "any_of", "conditions": [tree, FALSE]}) is value


@given(json_values, json_values)
def test_eq_and_ne_are_opposites_and_symmetric(left: Any, right: Any) -> None:
    eq = holds({"type": "eq", "left": {"value": left}, "right": {"value": right}})
    ne = holds({"type": "ne", "left": {"value": left}, "right": {"value": right}})
    assert eq is (not ne)
    assert eq is holds({"type": "eq", "left": {"value": right}, "right": {"value": left}})
    assert holds({"type": "eq", "left": {"value": left}, "right": {"value": left}})


@given(json_values, st.lists(json_values, max_size=4))
def test_in_and_not_in_are_opposites(item: Any, items: list[Any]) -> None:
    found = holds({"type": "in", "left": {"value": item}, "right": items})
    assert found is (not holds({"type": "not_in", "left": {"value": item}, "right": items}))
    assert found is any(json_equal(item, each) for each in items)


@given(st.integers() | st.floats(allow_nan=False), st.integers() | st.floats(allow_nan=False))
def test_orderings_agree_with_python_on_numbers(left: float, right: float) -> None:
    def check(op: str) -> bool:
        return holds({"type": op, "left": left, "right": right})

    assert check("gt") is (left > right)
    assert check("lte") is (left <= right)
    assert check("gte") is (left >= right)
    assert check("lt") is (left < right)


@given(json_values)
def test_evaluation_never_raises_on_any_payload(payload: Any) -> None:
    context = ConditionContext(payload=payload)
    for op in ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "not_in", "regex"):
        holds({"type": op, "left": path("payload.a.0.b"), "right": path("payload.a")}, context)
    holds({"type": "exists", "operand": path("payload.0")}, context)
