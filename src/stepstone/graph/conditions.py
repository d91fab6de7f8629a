"""Strait's JSON condition trees, checked when a definition is created (evaluation: condition_tree).

A node is an object with a ``type``; the shapes are Strait's::

    {"type": "step_status", "step_ref": "charge", "status": "completed"}
    {"type": "step_status_in", "step_ref": "charge", "statuses": ["failed", "skipped"]}
    {"type": "all_of" | "any_of", "conditions": [node, ...]}
    {"type": "not", "condition": node}
    {"type": "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "contains" | "in" | "not_in" | "regex",
     "left": operand, "right": operand}
    {"type": "exists", "operand": operand}

An operand is a JSON literal, ``{"value": literal}``, ``{"step_ref": ref}`` (that step's status,
as Strait reads it) or, a Stepstone addition, ``{"path": "payload.order.total"}`` /
``{"path": "parent_outputs.<ref>.field"}`` (a list of keys works too, for refs with dots).

Evaluation never raises: a missing value is null, and a comparison of values that cannot be
compared (a number with a string, ``gt`` on null) is false. ``not_in`` is Stepstone's.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.graph.condition_tree import (
    MAX_REGEX_PATTERN,
    Compare,
    ConditionContext,
    Exists,
    Junction,
    Literal,
    Node,
    Not,
    Operand,
    Path,
    Status,
    StatusIs,
    evaluate,
    is_number,
    json_equal,
)
from stepstone.graph.vocabulary import StepRunStatus

__all__ = ["CONDITION_TYPES", "Condition", "ConditionContext", "json_equal", "parse_condition"]

MAX_DEPTH = 32
MAX_NODES = 500

_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "not_in", "regex")
_KEYS: dict[str, frozenset[str]] = {
    "step_status": frozenset({"step_ref", "status"}),
    "step_status_in": frozenset({"step_ref", "statuses"}),
    "all_of": frozenset({"conditions"}),
    "any_of": frozenset({"conditions"}),
    "not": frozenset({"condition"}),
    "exists": frozenset({"operand"}),
    **{op: frozenset({"left", "right"}) for op in _COMPARISONS},
}
CONDITION_TYPES = tuple(_KEYS)
_ROOTS = ("payload", "parent_outputs")


@dataclass(frozen=True, slots=True)
class Condition:
    """A checked condition tree. ``raw`` is the JSON as given, for answers that echo it."""

    raw: Any
    _root: Node = field(repr=False, compare=False)

    def evaluate(self, context: ConditionContext) -> bool:
        """True when the step should run; false skips it."""
        return evaluate(self._root, context)


def parse_condition(
    raw: Any,
    *,
    step_ref: str | None = None,
    upstream: Collection[str] | None = None,
    parents: Collection[str] | None = None,
) -> Condition:
    """Check a condition tree and compile it.

    Args:
        raw: the JSON tree.
        step_ref: the step it guards, named in error messages.
        upstream: if given, the only steps whose status it may read (the step's ancestors:
            any other step's status is not settled when this one becomes ready).
        parents: if given, the only refs ``parent_outputs`` paths may name.

    Raises:
        WorkflowDefinitionError: the tree is malformed; the message says where and why.
    """
    parser = _Parser(step_ref, upstream, parents)
    return Condition(raw=copy.deepcopy(raw), _root=parser.node(raw, "condition", 1))


class _Parser:
    def __init__(
        self,
        step_ref: str | None,
        upstream: Collection[str] | None,
        parents: Collection[str] | None,
    ) -> None:
        self.step_ref = step_ref
        self.upstream = upstream
        self.parents = parents
        self.nodes = 0

    def fail(self, where: str, problem: str) -> WorkflowDefinitionError:
        owner = f"step {self.step_ref!r}: " if self.step_ref is not None else ""
        return WorkflowDefinitionError(f"{owner}{where}: {problem}")

    def node(self, raw: Any, where: str, depth: int) -> Node:
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise self.fail(where, f"a condition nests at most {MAX_DEPTH} deep, {MAX_NODES} nodes")
        if not isinstance(raw, Mapping):
            raise self.fail(where, 'a condition is an object like {"type": "eq", ...}')
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in _KEYS:
            raise self.fail(
                where,
                f"unknown condition type {kind!r}; use one of {', '.join(CONDITION_TYPES)}",
            )
        unknown = sorted(set(raw) - _KEYS[kind] - {"type"})
        if unknown:
            allowed = ", ".join(sorted(_KEYS[kind]))
            raise self.fail(where, f"{kind} takes {allowed}, not {', '.join(unknown)}")
        missing = sorted(key for key in _KEYS[kind] if key not in raw)
        if missing and kind not in ("all_of", "any_of"):  # Strait: no conditions = empty list
            raise self.fail(where, f"{kind} needs {', '.join(missing)}")
        if kind == "step_status":
            return StatusIs(self.status_ref(raw, where), self.statuses([raw["status"]], where))
        if kind == "step_status_in":
            if not isinstance(raw["statuses"], list):
                raise self.fail(where, "statuses must be a list of step statuses")
            return StatusIs(self.status_ref(raw, where), self.statuses(raw["statuses"], where))
        if kind in ("all_of", "any_of"):
            items = raw.get("conditions") or []
            if not isinstance(items, list):
                raise self.fail(where, f"{kind}.conditions must be a list of conditions")
            return Junction(
                every=kind == "all_of",
                conditions=tuple(
                    self.node(item, f"{where}.conditions[{i}]", depth + 1)
                    for i, item in enumerate(items)
                ),
            )
        if kind == "not":
            return Not(self.node(raw["condition"], f"{where}.condition", depth + 1))
        if kind == "exists":
            return Exists(self.operand(raw["operand"], f"{where}.operand"))
        left = self.operand(raw["left"], f"{where}.left")
        right = self.operand(raw["right"], f"{where}.right")
        self.check_literal(kind, right, f"{where}.right")
        return Compare(kind, left, right)

    def status_ref(self, raw: Mapping[str, Any], where: str) -> str:
        return self.readable_step(raw["step_ref"], f"{where}.step_ref")

    def readable_step(self, ref: Any, where: str) -> str:
        if not isinstance(ref, str) or not ref:
            raise self.fail(where, "step_ref must be a step's ref")
        if self.upstream is not None and ref not in self.upstream:
            raise self.fail(
                where,
                f"reads the status of {ref!r}, which is not upstream of this step (its "
                f"status is not settled when this step is ready); add {ref!r} to depends_on",
            )
        return ref

    def statuses(self, items: list[Any], where: str) -> frozenset[str]:
        known = [status.value for status in StepRunStatus]
        for item in items:
            if item not in known:
                raise self.fail(
                    where, f"unknown step status {item!r}; use one of {', '.join(known)}"
                )
        return frozenset(items)

    def operand(self, raw: Any, where: str) -> Operand:
        if not isinstance(raw, Mapping):
            return Literal(copy.deepcopy(raw))
        if len(raw) != 1 or next(iter(raw)) not in ("value", "step_ref", "path"):
            raise self.fail(
                where,
                'an operand object is {"value": ...}, {"step_ref": ...} or {"path": ...}',
            )
        if "value" in raw:
            return Literal(copy.deepcopy(raw["value"]))
        if "step_ref" in raw:
            return Status(self.readable_step(raw["step_ref"], where))
        return Path(self.path(raw["path"], where))

    def path(self, raw: Any, where: str) -> tuple[str | int, ...]:
        if isinstance(raw, str):
            keys: list[str | int] = list(raw.split("."))
        elif isinstance(raw, list) and all(
            isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool))
            for key in raw
        ):
            keys = list(raw)
        else:
            raise self.fail(where, 'path is a string like "payload.order.total" or a list of keys')
        if not keys or keys[0] not in _ROOTS or "" in keys:
            raise self.fail(
                where, f"path {raw!r} must start with payload or parent_outputs.<step_ref>"
            )
        if keys[0] == "parent_outputs":
            if len(keys) < 2:
                raise self.fail(
                    where, "a parent_outputs path names the parent: parent_outputs.<ref>"
                )
            if self.parents is not None and keys[1] not in self.parents:
                raise self.fail(
                    where,
                    f"path {raw!r} reads the output of {keys[1]!r}, which is not in this "
                    "step's depends_on",
                )
        return tuple(keys)

    def check_literal(self, op: str, right: Operand, where: str) -> None:
        if not isinstance(right, Literal):
            return
        value = right.value
        if op in ("in", "not_in") and not isinstance(value, list):
            raise self.fail(where, f"{op} needs a list on the right")
        if op in ("gt", "gte", "lt", "lte") and not (is_number(value) or isinstance(value, str)):
            raise self.fail(where, f"{op} compares numbers (or strings), not {value!r}")
        if op == "regex":
            if not isinstance(value, str) or len(value) > MAX_REGEX_PATTERN:
                raise self.fail(
                    where, f"regex needs a pattern string of at most {MAX_REGEX_PATTERN} chars"
                )
            try:
                re.compile(value)
            except re.error as exc:
                raise self.fail(where, f"invalid regex {value!r}: {exc}") from None
