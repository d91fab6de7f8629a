"""Approvals, sleeps, events and child runs: waits that hold no memory, released from outside."""

from __future__ import annotations

import pytest

from stepstone.domain.errors import ConflictError, NotFoundError, PermissionDeniedError
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage.base import RunFilter
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker
from tests.graph_runs.support import JOBS, TENANT, Graphs, job, output
from tests.runtime.support import eventually, looping_worker


async def test_an_approval_waits_until_approved(graphs: Graphs, worker: Worker) -> None:
    workflow = await graphs.create(
        "approve",
        [
            {"step_ref": "ok", "type": "approval", "approvers": ["ada"]},  # the SDK's spelling
            job("go", depends_on=["ok"], payload={"me": "go"}),
        ],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle(advance=False)
    assert await graphs.statuses(run.id) == {"ok": "waiting", "go": "pending"}
    with pytest.raises(PermissionDeniedError, match="only by 'ada', not by 'mallory'"):
        await graphs.runs.approve(TENANT, run.id, "ok", "mallory")
    with pytest.raises(PermissionDeniedError, match="not by an unnamed caller"):
        await graphs.runs.approve(TENANT, run.id, "ok", None)
    await graphs.runs.approve(TENANT, run.id, "ok", "ada")
    await graphs.runs.approve(TENANT, run.id, "ok", "ada")  # a client's retry: no harm
    await worker.run_until_idle(advance=False)
    done = await graphs.run(run.id)
    assert done.status.value == "complete"
    assert output(done)["ok"]["approver"] == "ada"
    assert await graphs.statuses(run.id) == {"ok": "completed", "go": "completed"}


async def test_an_approval_times_out(graphs: Graphs, worker: Worker, clock: FakeClock) -> None:
    workflow = await graphs.create(
        "deadline",
        [{"step_ref": "ok", "step_type": "approval", "approval_timeout_secs": 60}],
    )
    run = await graphs.trigger(workflow)
    await worker.run_until_idle(advance=False)
    assert await graphs.statuses(run.id) == {"ok": "waiting"}
    await worker.run_until_idle()  # the clock jumps past the timeout
    failed = await graphs.run(run.id)
    assert failed.status.value == "errored"
    assert await graphs.statuses(run.id) == {"ok": "failed"}
    with pytest.raises(ConflictError):
        await graphs.runs.approve(TENANT, run.id, "ok", None)


async def test_a_sleep_step_waits_its_time(
    graphs: Graphs, worker: Worker, clock: FakeClock
) -> None:
    workflow = await graphs.create(
        "naps",
        [
            {"step_ref": "nap", "step_type": "sleep", "sleep_duration_secs": 30},
            job("up", depends_on=["nap"]),
        ],
    )
    run = await graphs.trigger(workflow)
    started = clock.now_ms()
    await worker.run_until_idle(advance=False)
    assert await graphs.statuses(run.id) == {"nap": "waiting", "up": "pending"}
    await worker.run_until_idle()
    assert (await graphs.run(run.id)).status.value == "complete"
    assert clock.now_ms() - started >= 30_000


async def test_an_event_key_releases_the_runs_waiting_for_it(
    graphs: Graphs, worker: Worker
) -> None:
    workflow = await graphs.create(
        "events",
        [
            {
                "step_ref": "hear",
                "step_type": "wait_for_event",
                "event_key": "order.{{payload.id}}.paid",
            }
        ],
    )
    first = await graphs.trigger(workflow, {"id": 1})
    second = await graphs.trigger(workflow, {"id": 2})
    await worker.run_until_idle(advance=False)
    with pytest.raises(NotFoundError):
        await graphs.runs.send_event(TENANT, "order.3.paid", {})
    released = await graphs.runs.send_event(TENANT, "order.1.paid", {"amount": 5})
    assert [w.instance_id for w in released] == [first.id]
    await worker.run_until_idle(advance=False)
    assert output(await graphs.run(first.id)) == {"hear": {"amount": 5}}
    assert (await graphs.run(second.id)).status.value == "waiting"


async def test_a_sub_workflow_returns_its_childs_output(graphs: Graphs, worker: Worker) -> None:
    child = await graphs.create(
        "child", [job("double", "add", payload={"a": "{{payload.n}}", "b": "{{payload.n}}"})]
    )
    parent = await graphs.create(
        "parent",
        [
            {
                "step_ref": "sub",
                "step_type": "sub_workflow",
                "sub_workflow_id": child.workflow.id,
                "payload": {"n": "{{payload.n}}"},
            },
            job("after", depends_on=["sub"], payload={"me": "after"}),
        ],
    )
    run = await graphs.trigger(parent, {"n": 21})
    await worker.run_until_idle()
    done = await graphs.run(run.id)
    assert done.status.value == "complete", done.error_message
    assert output(done)["sub"] == {"double": {"sum": 42}}
    page = await graphs.runs.list_runs(TENANT, RunFilter(workflow_id=child.workflow.id))
    [child_run] = page.items
    assert child_run.parent_pk == done.pk
    assert child_run.parent_step == "sub"
    assert child_run.depth == 1


async def test_a_child_run_starts_at_once_under_a_worker_that_polls_once_a_minute(
    store: SqlStore,
) -> None:
    engine = Engine(store)  # on the real clock, as the worker's loop is
    await engine.deploy_path(JOBS)
    graphs = Graphs(engine)
    child = await graphs.create("child", [job("one", payload={"me": "child"})])
    parent = await graphs.create(
        "parent",
        [{"step_ref": "sub", "step_type": "sub_workflow", "sub_workflow_id": child.workflow.id}],
    )
    async with looping_worker(store, engine, poll_ms=60_000):
        run = await graphs.trigger(parent)

        async def finished() -> bool:
            return (await graphs.run(run.id)).status.value == "complete"

        await eventually(finished, what="the parent run to finish")
    assert output(await graphs.run(run.id))["sub"] == {"one": {"me": "child"}}


async def test_nesting_deeper_than_allowed_fails_the_step(graphs: Graphs, worker: Worker) -> None:
    leaf = await graphs.create("leaf", [job("x")])
    middle = await graphs.create(
        "middle",
        [
            {
                "step_ref": "down",
                "step_type": "sub_workflow",
                "sub_workflow_id": leaf.workflow.id,
                "max_nesting_depth": 1,
            }
        ],
    )
    top = await graphs.create(
        "top",
        [{"step_ref": "down", "step_type": "sub_workflow", "sub_workflow_id": middle.workflow.id}],
    )
    run = await graphs.trigger(top)
    await worker.run_until_idle()
    failed = await graphs.run(run.id)
    assert failed.status.value == "errored"
    # The middle run could not start its child two deep, and its failure is the top's.
    assert "nested 2 deep; the limit is 1" in (failed.error_message or "")


async def test_runs_nest_ten_deep_but_not_eleven(graphs: Graphs, worker: Worker) -> None:
    chain = [await graphs.create("level-0", [job("x", payload={"me": "bottom"})])]
    for level in range(1, 12):
        below = chain[-1].workflow.id
        step = {"step_ref": "down", "step_type": "sub_workflow", "sub_workflow_id": below}
        chain.append(await graphs.create(f"level-{level}", [step]))
    ten_deep = await graphs.trigger(chain[10])
    eleven_deep = await graphs.trigger(chain[11])
    await worker.run_until_idle()
    assert (await graphs.run(ten_deep.id)).status.value == "complete"
    failed = await graphs.run(eleven_deep.id)
    assert failed.status.value == "errored"
    assert "nested 11 deep; the limit is 10" in (failed.error_message or "")
