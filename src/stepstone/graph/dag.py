"""Dependency graphs of steps: validation, a deterministic topological order, reachability."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stepstone.domain.errors import NotFoundError, WorkflowDefinitionError


@dataclass(frozen=True, slots=True)
class Dag:
    """An acyclic graph over step refs; build one with :func:`build_dag`.

    Every sequence it answers is deterministic: definition order, or the topological order
    that breaks ties by definition order.
    """

    refs: tuple[str, ...]
    """Every step ref, in definition order."""
    parents: Mapping[str, tuple[str, ...]]
    """Each step's distinct dependencies, in the order its ``depends_on`` lists them."""
    children: Mapping[str, tuple[str, ...]]
    """Each step's direct dependents, in definition order."""
    order: tuple[str, ...]
    """Topological order: every step after all its dependencies, ties by definition order."""
    position: Mapping[str, int]
    """Each step's index in :attr:`order`."""

    def known(self, ref: str) -> str:
        """``ref`` itself; ``NotFoundError`` if the graph has no such step."""
        if ref not in self.parents:
            raise NotFoundError(f"the workflow has no step {ref!r}")
        return ref

    @property
    def roots(self) -> tuple[str, ...]:
        """Steps without dependencies, in definition order."""
        return tuple(ref for ref in self.refs if not self.parents[ref])

    @property
    def leaves(self) -> tuple[str, ...]:
        """Steps nothing depends on, in definition order."""
        return tuple(ref for ref in self.refs if not self.children[ref])

    def descendants(self, ref: str) -> tuple[str, ...]:
        """Every step downstream of ``ref`` (not ``ref`` itself), in topological order."""
        return self._sorted(_reach(self.children, self.known(ref)))

    def ancestors(self, ref: str) -> tuple[str, ...]:
        """Every step upstream of ``ref`` (not ``ref`` itself), in topological order."""
        return self._sorted(_reach(self.parents, self.known(ref)))

    def _sorted(self, refs: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(refs, key=self.position.__getitem__))


def _reach(edges: Mapping[str, tuple[str, ...]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(edges[start])
    while stack:
        ref = stack.pop()
        if ref not in seen:
            seen.add(ref)
            stack.extend(edges[ref])
    return seen


def build_dag(steps: Sequence[tuple[str, Sequence[str]]]) -> Dag:
    """Check ``(ref, depends_on)`` pairs and return their graph.

    Raises:
        WorkflowDefinitionError: a duplicate ref, a dependency on an unknown step or on itself,
            or a cycle (the message lists the steps on it, in dependency order).
    """
    index: dict[str, int] = {}
    for i, (ref, _) in enumerate(steps):
        if ref in index:
            raise WorkflowDefinitionError(
                f"duplicate step_ref {ref!r}: steps[{index[ref]}] and steps[{i}] share it; "
                "every step needs its own"
            )
        index[ref] = i
    parents: dict[str, tuple[str, ...]] = {}
    children: dict[str, list[str]] = {ref: [] for ref in index}
    for ref, depends_on in steps:
        distinct = tuple(dict.fromkeys(depends_on))
        for dep in distinct:
            if dep == ref:
                raise WorkflowDefinitionError(f"step {ref!r} depends on itself")
            if dep not in index:
                raise WorkflowDefinitionError(
                    f"step {ref!r} depends on {dep!r}, which is not a step of this workflow"
                )
            children[dep].append(ref)
        parents[ref] = distinct
    # Dependents were appended in definition order already.
    order = _topological(index, parents, children)
    return Dag(
        refs=tuple(index),
        parents=parents,
        children={ref: tuple(kids) for ref, kids in children.items()},
        order=order,
        position={ref: i for i, ref in enumerate(order)},
    )


def _topological(
    index: Mapping[str, int],
    parents: Mapping[str, tuple[str, ...]],
    children: Mapping[str, list[str]],
) -> tuple[str, ...]:
    """Kahn's algorithm; the ready step that comes first in the definition goes first."""
    missing = {ref: len(deps) for ref, deps in parents.items()}
    ready = [index[ref] for ref, count in missing.items() if count == 0]
    heapq.heapify(ready)
    refs = list(index)
    order: list[str] = []
    while ready:
        ref = refs[heapq.heappop(ready)]
        order.append(ref)
        for child in children[ref]:
            missing[child] -= 1
            if missing[child] == 0:
                heapq.heappush(ready, index[child])
    if len(order) < len(refs):
        raise WorkflowDefinitionError(_describe_cycle(refs, parents, set(order)))
    return tuple(order)


def _describe_cycle(
    refs: Sequence[str], parents: Mapping[str, tuple[str, ...]], done: set[str]
) -> str:
    # Every step Kahn could not order has a dependency it could not order either, so
    # following those dependencies from any of them must come back round: that is a cycle.
    stuck = [ref for ref in refs if ref not in done]
    path: list[str] = []
    seen: dict[str, int] = {}
    ref = stuck[0]
    while ref not in seen:
        seen[ref] = len(path)
        path.append(ref)
        ref = next(dep for dep in parents[ref] if dep not in done)
    cycle = [*path[seen[ref] :], ref]
    return (
        f"the steps form a dependency cycle: {' -> '.join(cycle)} "
        f"(each depends on the next), so none of them can ever start"
    )
