"""Graph definitions run by the durable interpreter: order, data flow, conditions, failures."""

from __future__ import annotations

from stepstone.worker.worker import Worker
from tests.graph_runs.support import TIMELINE, Graphs, job, output


async def test_a_diamond_runs_each_step_once_after_its_parents(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "diamond",
        [
            job("a", payload={"me": "a"}),
            job("b", depends_on=["a"], payload={"me": "b"}),
            job("c", depends_on=["a"], payload={"me": "c"}),
            job("d", depends_on=["b", "c"], payload={"me": "d"}),
        ],
    )
    run = await graphs.trigger(workflow, {"order": 7})
    await worker.run_until_idle()
    done = await graphs.run(run.id)
    assert done.status.value == "complete"
    result = output(done)
    assert result["a"] == {"order": 7, "me": "a"}
    assert result["d"]["parent_outputs"]["b"]["me"] == "b"
    steps = await graphs.statuses(run.id)
    assert steps == {"a": "completed", "b": "completed", "c": "completed", "d": "completed"}
    views = await graphs.steps(run.id)
    assert (views["d"].deps_completed, views["d"].deps_required) == (2, 2)
    # Each job ran once, and after every one of its parents had run.
    ran = [ref for event, ref in TIMELINE if event == "run"]
    assert sorted(ran) == ["a", "b", "c", "d"]
    assert ran[0] == "a"
    assert ran[-1] == "d"
    for child, parents in {"b": "a", "c": "a", "d": "bc"}.items():
        started = views[child].started_at
        assert started is not None
        assert all(started >= (views[p].finished_at or started + 1) for p in parents)
