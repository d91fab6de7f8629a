"""What users do to runs: retry, replay a subtree, skip, force-complete, retry a step, bulk."""

from __future__ import annotations

from typing import Any

import pytest

from stepstone.api.runs.status import run_filter, run_status
from stepstone.domain.errors import ConflictError
from stepstone.domain.status import IN_PROGRESS, ON_CLAIM, RUNNABLE, InstanceStatus
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.graph_runs.support import TENANT, TIMELINE, Graphs, job, output

S = InstanceStatus


async def _chain(graphs: Graphs) -> object:
    return await graphs.create(
        "chain",
        [
            job("a", payload={"me": "a"}),
            job("side", depends_on=["a"], payload={"me": "side"}),
            # After side: a failing b ends the run, cancelling whatever still runs.
            job("b", "boom", depends_on=["a", "side"]),
            job("c", depends_on=["b"], payload={"me": "c"}),
        ],
    )


async def test_retry_makes_a_new_run_that_keeps_what_completed(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await _chain(graphs)
    run = await graphs.trigger(workflow, {"k": 1})
    await worker.run_until_idle()
    assert (await graphs.run(run.id)).status.value == "errored"
    before = list(TIMELINE)
    retried = await graphs.runs.retry(TENANT, run.id)
    assert retried.retry_of == run.id
    assert retried.triggered_by == "retry"
    await worker.run_until_idle()
    # a and side completed the first time: copied, not run again; b failed again.
    assert TIMELINE[len(before) :] == []
    statuses = await graphs.statuses(retried.id)
    assert statuses["a"] == statuses["side"] == "completed"
    assert statuses["b"] == "failed"
    first, second = await graphs.steps(run.id), await graphs.steps(retried.id)
    for kept in ("a", "side"):
        assert second[kept].output == first[kept].output
        assert second[kept].output is not None
    with pytest.raises(ConflictError):  # only ended runs are retried
        await graphs.runs.retry(TENANT, (await graphs.trigger(workflow)).id)


async def test_replay_subtree_resets_the_step_and_its_descendants(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "tree",
        [
            job("a", payload={"me": "a"}),
            job("b", depends_on=["a"], payload={"me": "b"}),
            job("c", depends_on=["b"], payload={"me": "c"}),
            job("d", depends_on=["a"], payload={"me": "d"}),
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    assert (await graphs.run(run.id)).status.value == "complete"
    TIMELINE.clear()
    assert await graphs.runs.replay_subtree(TENANT, run.id, "b") == 2
    await worker.run_until_idle()
    assert (await graphs.run(run.id)).status.value == "complete"
    assert sorted(ref for _, ref in TIMELINE) == ["b", "c"]


async def test_skip_and_force_complete_settle_steps_by_hand(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create(
        "manual",
        [
            {"step_ref": "gate", "step_type": "approval"},
            {"step_ref": "hear", "step_type": "wait_for_event", "event_key": "never"},
            job("after", depends_on=["gate", "hear"], payload={"me": "after"}),
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle(advance=False)
    await graphs.runs.skip(TENANT, run.id, "gate", "not needed")
    await graphs.runs.force_complete(TENANT, run.id, "hear", {"forced": True})
    await worker.run_until_idle(advance=False)
    done = await graphs.run(run.id)
    assert done.status.value == "complete", done.error_message
    assert output(done)["after"]["parent_outputs"] == {"gate": None, "hear": {"forced": True}}
    views = await graphs.steps(run.id)
    assert views["gate"].status.value == "skipped"
    assert views["gate"].error == "not needed"
    # The event wait was closed: nothing waits for the key any more.
    assert await graphs.runs.waiting(TENANT, "never") == []
    with pytest.raises(ConflictError):
        await graphs.runs.skip(TENANT, run.id, "after", None)


class WorkerMovesFirst:
    """The real store, where a worker claims the run (waiting -> running) just before the first
    step edit lands: the race between an edit's read and its write."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.claimed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def edit_steps(self, pk: int, **kwargs: Any) -> Any:
        if not self.claimed:
            now = kwargs["now"]
            [claim] = await self._store.claim(
                "w", now, 30_000, 1, RUNNABLE, start=ON_CLAIM, first=IN_PROGRESS, ahead_ms=10**12
            )
            self.claimed = claim.instance.pk == pk and claim.instance.status is S.RUNNING
        return await self._store.edit_steps(pk, **kwargs)


async def test_a_step_edit_goes_on_when_the_worker_moved_the_run_meanwhile(
    graphs: Graphs, worker: Worker
) -> None:
    """Between running and waiting the edit means the same: no conflict for the user."""
    workflow = await graphs.create(
        "raced", [{"step_ref": "gate", "step_type": "approval"}, job("after", depends_on=["gate"])]
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle(advance=False)
    assert (await graphs.run(run.id)).status is S.WAITING
    racing = WorkerMovesFirst(graphs.runs.store)
    graphs.runs.store = racing  # type: ignore[assignment]

    await graphs.runs.skip(TENANT, run.id, "gate", "not needed")

    assert racing.claimed
    assert (await graphs.statuses(run.id))["gate"] == "skipped"
    assert (await graphs.run(run.id)).status is S.RUNNING


async def test_retry_step_reruns_one_settled_step(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create("once", [job("a", payload={"me": "a"})])
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    TIMELINE.clear()
    view = await graphs.runs.retry_step(TENANT, run.id, "a")
    assert view.status.value == "pending"
    assert run_status(await graphs.run(run.id)).value == "pending"  # reopened
    await worker.run_until_idle()
    assert TIMELINE == [("run", "a")]
    assert (await graphs.run(run.id)).status.value == "complete"


async def test_a_canceled_run_keeps_its_steps_as_they_are(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create(
        "stopped", [{"step_ref": "gate", "step_type": "approval"}, job("a", depends_on=["gate"])]
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle(advance=False)
    await graphs.runs.cancel(TENANT, run.id)
    edits = (
        graphs.runs.force_complete(TENANT, run.id, "gate", {"late": True}),
        graphs.runs.retry_step(TENANT, run.id, "gate"),
        graphs.runs.replay_subtree(TENANT, run.id, "gate"),
        graphs.runs.skip(TENANT, run.id, "gate", "late"),
    )
    for edit in edits:
        with pytest.raises(ConflictError, match=r"canceled|ended"):
            await edit
    assert run_status(await graphs.run(run.id)).value == "canceled"
    await worker.run_until_idle(advance=False)
    assert TIMELINE == []


async def test_force_complete_of_a_settled_step_is_a_conflict(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create("settled", [job("a", payload={"me": "a"})])
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()
    with pytest.raises(ConflictError, match="completed already"):
        await graphs.runs.force_complete(TENANT, run.id, "a", {"other": 1})
    assert output(await graphs.run(run.id)) == {"a": {"me": "a"}}


async def test_a_run_past_its_timeout_is_timed_out(
    graphs: Graphs, worker: Worker, clock: FakeClock
) -> None:
    workflow = await graphs.create(
        "slowpoke", [{"step_ref": "gate", "step_type": "approval"}], timeout_secs=60
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle()  # the clock jumps to the deadline
    ended = await graphs.run(run.id)
    assert run_status(ended).value == "timed_out"
    page = await graphs.runs.list_runs(TENANT, run_filter("timed_out"))
    assert [i.id for i in page.items] == [run.id]
    assert (await graphs.runs.list_runs(TENANT, run_filter("failed"))).items == []


async def test_step_overrides_disable_steps_and_idempotency_keys_dedupe(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "opts", [job("a", payload={"me": "a"}), job("b", payload={"me": "b"})]
    )
    run = await graphs.trigger(
        workflow, None, step_overrides={"b": {"enabled": False}}, idempotency_key="k1"
    )
    again = await graphs.trigger(workflow, None, idempotency_key="k1")
    assert again.id == run.id
    await worker.run_until_idle()
    assert await graphs.statuses(run.id) == {"a": "completed", "b": "skipped"}
    assert TIMELINE == [("run", "a")]


async def test_bulk_cancel_and_replay_a_hundred_runs(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create("many", [{"step_ref": "gate", "step_type": "approval"}])
    runs = [await graphs.trigger(workflow) for _ in range(100)]
    await worker.run_until_idle(advance=False)
    ids = [r.id for r in runs]
    assert await graphs.runs.bulk_cancel(TENANT, [*ids, "no-such-run"]) == (100, 1)
    statuses = {run_status(await graphs.run(i)).value for i in ids}
    assert statuses == {"canceled"}
    assert await graphs.runs.bulk_replay(TENANT, ids[:50]) == (50, 0)
    page = await graphs.runs.list_runs(TENANT, run_filter("pending", limit=1000))
    assert len(page.items) == 50
    assert {i.retry_of for i in page.items} == set(ids[:50])


async def test_canceling_a_run_cancels_the_child_runs_it_started(
    graphs: Graphs, worker: Worker
) -> None:
    child = await graphs.create("waits", [{"step_ref": "gate", "step_type": "approval"}])
    parent = await graphs.create(
        "starts",
        [{"step_ref": "sub", "step_type": "sub_workflow", "sub_workflow_id": child.workflow.id}],
    )
    run = await graphs.trigger(parent)
    await worker.run_until_idle(advance=False)
    page = await graphs.runs.list_runs(TENANT, run_filter(None, workflow_id=child.workflow.id))
    [child_run] = page.items
    assert child_run.parent_pk == run.pk
    await graphs.runs.cancel(TENANT, run.id)
    assert run_status(await graphs.run(run.id)).value == "canceled"
    assert run_status(await graphs.run(child_run.id)).value == "canceled"
    done = await graphs.create("quick", [job("a")])
    quick = await graphs.trigger(done)
    await worker.run_until_idle()
    with pytest.raises(ConflictError):  # a completed run cannot be canceled
        await graphs.runs.cancel(TENANT, quick.id)
