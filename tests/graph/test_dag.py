"""Topology: a deterministic order, reachability, and refusals that name the steps."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstone.domain.errors import NotFoundError, ValidationError, WorkflowDefinitionError
from stepstone.graph import GraphDefinition, GraphStep, build_dag, parse_definition

Edges = list[tuple[str, list[str]]]


def definition(edges: Edges) -> GraphDefinition:
    return parse_definition(
        {"steps": [{"step_ref": ref, "job_id": "job", "depends_on": deps} for ref, deps in edges]}
    )


DIAMOND: Edges = [
    ("load", []),
    ("left", ["load"]),
    ("right", ["load"]),
    ("join", ["right", "left"]),
]


def test_diamond_topology() -> None:
    graph = definition(DIAMOND)
    assert graph.roots == ("load",)
    assert graph.leaves == ("join",)
    assert graph.topological_order == ("load", "left", "right", "join")
    assert graph.parents("join") == ("right", "left")
    assert graph.children("load") == ("left", "right")
    assert graph.descendants("load") == ("left", "right", "join")
    assert graph.descendants("left") == ("join",)
    assert graph.descendants("join") == ()
    assert graph.ancestors("join") == ("load", "left", "right")
    assert [graph.deps_required(ref) for ref in graph.refs] == [0, 1, 1, 2]


def test_ties_keep_definition_order() -> None:
    graph = definition([("z", []), ("a", []), ("m", ["z"]), ("b", [])])
    assert graph.roots == ("z", "a", "b")
    assert graph.topological_order == ("z", "a", "m", "b")


def test_a_dependency_listed_twice_counts_once() -> None:
    graph = definition([("a", []), ("b", ["a", "a"])])
    assert graph.parents("b") == ("a",)
    assert graph.deps_required("b") == 1
    assert graph.children("a") == ("b",)


def test_unknown_step_is_not_found() -> None:
    graph = definition(DIAMOND)
    for ask in (graph.step, graph.descendants, graph.parents, graph.deps_required):
        with pytest.raises(NotFoundError, match="no step 'nope'"):
            ask("nope")


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([("a", []), ("b", ["zz"])], "step 'b' depends on 'zz', which is not a step"),
        ([("a", ["a"])], "step 'a' depends on itself"),
        ([("a", []), ("b", []), ("a", [])], r"duplicate step_ref 'a': steps\[0\] and steps\[2\]"),
        ([("a", ["b"]), ("b", ["a"])], "dependency cycle: a -> b -> a"),
        (
            [("start", []), ("x", ["start", "z"]), ("y", ["x"]), ("z", ["y"]), ("end", ["z"])],
            "dependency cycle: x -> z -> y -> x",
        ),
    ],
)
def test_refusals_name_the_steps(edges: Edges, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        definition(edges)


def test_cycle_message_names_only_steps_on_the_cycle() -> None:
    edges: Edges = [("a", []), ("b", ["a", "d"]), ("c", ["b"]), ("d", ["c"]), ("e", ["d"])]
    with pytest.raises(WorkflowDefinitionError) as caught:
        definition(edges)
    assert _cycle(str(caught.value)) == ["b", "d", "c", "b"]


def test_a_thousand_steps_in_a_chain() -> None:
    edges: Edges = [(f"s{i}", [f"s{i - 1}"] if i else []) for i in range(1_000)]
    graph = definition(edges)
    assert graph.topological_order == tuple(ref for ref, _ in edges)
    assert len(graph.descendants("s0")) == 999
    assert graph.ancestors("s999")[0] == "s0"


def test_the_definition_itself_checks_its_graph() -> None:
    with pytest.raises(WorkflowDefinitionError, match="cycle"):
        GraphDefinition(
            steps=(
                GraphStep("a", job_id="j", depends_on=("b",)),
                GraphStep("b", job_id="j", depends_on=("a",)),
            )
        )
    with pytest.raises(WorkflowDefinitionError, match="at least one step"):
        GraphDefinition(steps=())


def test_build_dag_alone() -> None:
    dag = build_dag([("b", ["a"]), ("a", [])])
    assert dag.order == ("a", "b")
    assert dag.roots == ("a",)
    assert dag.position == {"a": 0, "b": 1}


# -- properties over random graphs ------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 25) -> Edges:
    """A random DAG (each step depends only on lower-numbered ones), listed in random order."""
    count = draw(st.integers(min_value=1, max_value=max_steps))
    refs = [f"s{i}" for i in range(count)]
    deps = {
        ref: draw(st.lists(st.sampled_from(refs[:i]), max_size=4)) if i else []
        for i, ref in enumerate(refs)
    }
    shuffled = draw(st.permutations(refs))
    return [(ref, deps[ref]) for ref in shuffled]


def _reachable(edges: Edges, start: str) -> set[str]:
    children: dict[str, set[str]] = {ref: set() for ref, _ in edges}
    for ref, deps in edges:
        for dep in deps:
            children[dep].add(ref)
    seen: set[str] = set()
    stack = [start]
    while stack:
        for child in children[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _reference_order(edges: Edges) -> list[str]:
    """The rule, spelled slowly: the first step in definition order whose deps are all placed."""
    placed: list[str] = []
    remaining = list(edges)
    while remaining:
        i = next(i for i, (_, deps) in enumerate(remaining) if set(deps) <= set(placed))
        placed.append(remaining.pop(i)[0])
    return placed


@settings(max_examples=150)
@given(dags())
def test_topological_order_respects_every_edge(edges: Edges) -> None:
    graph = definition(edges)
    order = graph.topological_order
    assert sorted(order) == sorted(ref for ref, _ in edges)
    position = {ref: i for i, ref in enumerate(order)}
    for ref, deps in edges:
        for dep in deps:
            assert position[dep] < position[ref]
    assert list(order) == _reference_order(edges)
    assert definition(edges).topological_order == order


@settings(max_examples=150)
@given(dags())
def test_reachability_and_counts(edges: Edges) -> None:
    graph = definition(edges)
    assert graph.roots == tuple(ref for ref, deps in edges if not deps)
    for ref, deps in edges:
        assert graph.deps_required(ref) == len(set(deps))
        descendants = graph.descendants(ref)
        assert set(descendants) == _reachable(edges, ref)
        assert list(descendants) == sorted(descendants, key=graph.topological_order.index)
        for other in descendants:
            assert ref in graph.ancestors(other)


@settings(max_examples=150)
@given(dags(), st.data())
def test_a_back_edge_always_makes_a_named_cycle(edges: Edges, data: st.DataObject) -> None:
    candidates = [ref for ref, _ in edges if _reachable(edges, ref)]
    if not candidates:
        edges = [("s_root", []), *[(ref, [*deps, "s_root"]) for ref, deps in edges]]
        candidates = ["s_root"]
    upstream = data.draw(st.sampled_from(candidates))
    downstream = data.draw(st.sampled_from(sorted(_reachable(edges, upstream))))
    looped = [(ref, [*deps, downstream] if ref == upstream else deps) for ref, deps in edges]
    with pytest.raises(WorkflowDefinitionError) as caught:
        definition(looped)
    cycle = _cycle(str(caught.value))
    assert cycle[0] == cycle[-1]
    assert {upstream, downstream} <= set(cycle)
    depends = dict(looped)
    for ref, dep in itertools.pairwise(cycle):
        assert dep in depends[ref]


def _cycle(message: str) -> list[str]:
    found = re.search(r"cycle: (.+?) \(", message)
    assert found, message
    return found.group(1).split(" -> ")
