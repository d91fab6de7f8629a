"""Parallelism, data flow, conditions and on_failure policies of graph runs."""

from __future__ import annotations

import itertools

import pytest

from stepstone.worker.worker import Worker
from tests.graph_runs.support import PEAK, SPANS, TIMELINE, Graphs, job, output


@pytest.fixture(autouse=True)
def _reset_peak() -> None:
    PEAK.update(now=0, peak=0)
    SPANS.clear()


async def test_a_wide_graph_runs_at_most_max_parallel_steps_at_once(
    graphs: Graphs, worker: Worker
) -> None:
    steps = [job("root", payload={"me": "root"})] + [
        job(f"leaf{i}", "slow", depends_on=["root"], payload={"me": f"leaf{i}"}) for i in range(8)
    ]
    workflow = await graphs.create("wide", steps, max_parallel_steps=3)
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    assert (await graphs.run(run.id)).status.value == "complete"
    assert PEAK["peak"] == 3
    # By the recorded times too: no instant had more than three leaves running.
    edges = sorted([(s, 1) for _, s, _ in SPANS] + [(e, -1) for _, _, e in SPANS])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    assert peak == 3
    assert len(SPANS) == 8


async def test_templates_keep_json_types_and_conditions_skip(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "flow",
        [
            job("sum", "add", payload={"a": "{{payload.x}}", "b": 2}),
            job(
                "big",
                depends_on=["sum"],
                payload={
                    "me": "big",
                    "total": "{{parent_outputs.sum.sum}}",
                    "text": "s={{parent_outputs.sum.sum}}",
                },
                condition={"type": "gt", "left": {"path": "parent_outputs.sum.sum"}, "right": 10},
            ),
            job(
                "small",
                depends_on=["sum"],
                payload={"me": "small"},
                condition={
                    "type": "not",
                    "condition": {
                        "type": "gt",
                        "left": {"path": "parent_outputs.sum.sum"},
                        "right": 10,
                    },
                },
            ),
            job("after", depends_on=["big", "small"], payload={"me": "after"}),
        ],
    )
    run = await graphs.trigger(workflow, {"x": 40})
    await worker.run_until_idle()
    result = output(await graphs.run(run.id))
    assert result["sum"] == {"sum": 42}
    assert result["big"]["total"] == 42  # exactly one template: the JSON number
    assert result["big"]["text"] == "s=42"
    assert await graphs.statuses(run.id) == {
        "sum": "completed",
        "big": "completed",
        "small": "skipped",
        "after": "completed",
    }


async def test_fail_workflow_stops_the_run(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create(
        "fails", [job("a", "boom"), job("b", depends_on=["a"], payload={"me": "b"})]
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    failed = await graphs.run(run.id)
    assert failed.status.value == "errored"
    assert "step 'a' failed: it went boom" in (failed.error_message or "")
    assert await graphs.statuses(run.id) == {"a": "failed", "b": "canceled"}


async def test_skip_dependents_skips_the_subtree_and_goes_on(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "skips",
        [
            job("a", "boom", on_failure="skip_dependents"),
            job("b", depends_on=["a"], payload={"me": "b"}),
            job("c", depends_on=["b"], payload={"me": "c"}),
            job("other", payload={"me": "other"}),
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    assert (await graphs.run(run.id)).status.value == "complete"
    assert await graphs.statuses(run.id) == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "other": "completed",
    }
    assert ("run", "b") not in TIMELINE


async def test_continue_runs_the_dependents_anyway(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create(
        "continues",
        [job("a", "boom", on_failure="continue"), job("b", depends_on=["a"], payload={"me": "b"})],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    done = await graphs.run(run.id)
    assert done.status.value == "complete"
    assert output(done)["b"]["parent_outputs"] == {"a": None}
    assert await graphs.statuses(run.id) == {"a": "failed", "b": "completed"}


async def test_compensate_undoes_completed_steps_newest_first(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "saga",
        [
            job("reserve", payload={"me": "reserve"}, compensation_job_id="undo"),
            job(
                "charge",
                depends_on=["reserve"],
                payload={"me": "charge"},
                compensation_job_id="undo",
            ),
            job("ship", "boom", depends_on=["charge"], on_failure="compensate"),
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    failed = await graphs.run(run.id)
    assert failed.status.value == "errored"
    assert failed.rollback_outcome == "complete"
    assert [e for e in TIMELINE if e[0] == "undo"] == [("undo", "charge"), ("undo", "reserve")]


async def test_compensate_undoes_steps_completed_before_a_replay(
    graphs: Graphs, worker: Worker
) -> None:
    """The run leaves memory during the sleep and replays after it: the step that completed
    before must still be undone when a later one fails."""
    workflow = await graphs.create(
        "saga-nap",
        [
            job("reserve", payload={"me": "reserve"}, compensation_job_id="undo"),
            {
                "step_ref": "nap",
                "step_type": "sleep",
                "sleep_duration_secs": 60,
                "depends_on": ["reserve"],
            },
            job("ship", "boom", depends_on=["nap"], on_failure="compensate"),
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    failed = await graphs.run(run.id)
    assert failed.status.value == "errored"
    assert [e for e in TIMELINE if e[0] == "undo"] == [("undo", "reserve")]
    assert TIMELINE.count(("run", "reserve")) == 1


async def test_retry_waits_grow_no_longer_than_retry_max_delay(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "capped",
        [
            job(
                "f",
                "flaky",
                payload={"me": "f"},
                retry_max_attempts=4,
                retry_backoff="exponential",
                retry_initial_delay_secs=10,
                retry_max_delay_secs=15,
            )
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()  # the fake clock jumps over each wait
    assert TIMELINE == [("fail", "f")] * 4
    instance = await graphs.run(run.id)
    [record] = [r for r in await graphs.engine.store.load_steps(instance.pk) if r.name == "f"]
    attempts = record.attempts
    waits = [b.start - a.end for a, b in itertools.pairwise(attempts) if a.end]
    assert waits == [10_000, 15_000, 15_000]
