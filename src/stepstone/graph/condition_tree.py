"""Compiled condition trees and their evaluation (parsing and checking: ``conditions``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_REGEX_PATTERN = 1_000
MAX_REGEX_INPUT = 10_000
MISSING = None


@dataclass(frozen=True, slots=True)
class ConditionContext:
    """What a condition reads: the trigger payload, the parents' outputs, every step's status."""

    payload: Any = None
    parent_outputs: Mapping[str, Any] = field(default_factory=dict)
    step_statuses: Mapping[str, str] = field(default_factory=dict)


# Operands and nodes: small frozen trees, built once at parse time by ``conditions``.
@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Status:
    step_ref: str


@dataclass(frozen=True, slots=True)
class Path:
    keys: tuple[str | int, ...]


Operand = Literal | Status | Path


@dataclass(frozen=True, slots=True)
class StatusIs:
    step_ref: str
    statuses: frozenset[str]


@dataclass(frozen=True, slots=True)
class Junction:
    every: bool
    conditions: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    condition: Node


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Exists:
    operand: Operand


Node = StatusIs | Junction | Not | Compare | Exists


def evaluate(node: Node, context: ConditionContext) -> bool:
    if isinstance(node, StatusIs):
        return context.step_statuses.get(node.step_ref) in node.statuses
    if isinstance(node, Junction):
        results = (evaluate(child, context) for child in node.conditions)
        return all(results) if node.every else any(results)
    if isinstance(node, Not):
        return not evaluate(node.condition, context)
    if isinstance(node, Exists):
        return resolve(node.operand, context) is not None
    return _compare(node.op, resolve(node.left, context), resolve(node.right, context))


def resolve(operand: Operand, context: ConditionContext) -> Any:
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, Status):
        return context.step_statuses.get(operand.step_ref)
    root, *rest = operand.keys
    value: Any = context.payload if root == "payload" else context.parent_outputs
    for key in rest:
        if isinstance(value, Mapping):
            value = value.get(str(key), MISSING)
        elif isinstance(value, list) and str(key).isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return json_equal(left, right)
    if op == "ne":
        return not json_equal(left, right)
    if op in ("in", "not_in"):
        found = _contains(right, left) if isinstance(right, list | str) else False
        return found if op == "in" else not found
    if op == "contains":
        return _contains(left, right)
    if op == "regex":
        return _matches(left, right)
    comparable = (is_number(left) and is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not comparable:
        return False
    if op == "gt":
        return bool(left > right)
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list):
        return any(json_equal(element, item) for element in container)
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


def _matches(text: Any, pattern: Any) -> bool:
    if not isinstance(text, str) or not isinstance(pattern, str):
        return False
    if len(text) > MAX_REGEX_INPUT or len(pattern) > MAX_REGEX_PATTERN:
        return False
    compiled = _compile(pattern)
    return compiled is not None and compiled.search(text) is not None


@functools.lru_cache(maxsize=128)
def _compile(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values: 1 equals 1.0, but true is not 1 and "1" is not 1."""
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return left is None and right is None
