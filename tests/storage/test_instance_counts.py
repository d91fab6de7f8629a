"""The kept instance counts (triggers, migrations 0003 and 0005) always equal counting the rows.

Lists' ``total_count`` and the workflow list's per-status counts read them, so every way an
instance is created, moves, or goes away is exercised here and checked against a real count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from stepstone import NonRetryableError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.engine.engine import InstanceRequest
from stepstone.runtime.clock import FakeClock
from stepstone.storage.base import InstanceFilter
from stepstone.storage.sql import SqlStore
from stepstone.storage.tables import instances
from stepstone.worker.worker import Worker


def fail() -> None:
    raise NonRetryableError("no")


class Mixed(WorkflowEntrypoint):
    """Completes, fails, or waits for an event, as its params say."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        if event.payload == "fail":
            await step.do("fail", fail)
        if event.payload == "wait":
            await step.wait_for_event("go", type="go", timeout="1 hour")
        return "done"


async def _real_counts(store: SqlStore, workflow_id: str) -> dict[str, int]:
    query = (
        select(instances.c.status, func.count())
        .where(instances.c.workflow_id == workflow_id)
        .group_by(instances.c.status)
    )

    def read(conn: Connection) -> dict[str, int]:
        return {status: int(n) for status, n in conn.execute(query)}

    return await store._db.read(read)


async def _assert_counts_exact(engine: Engine, store: SqlStore, name: str) -> dict[str, int]:
    workflow = await engine.get_workflow(name)
    kept = (await engine.instance_counts([workflow]))[workflow.id]
    assert kept == await _real_counts(store, workflow.id)
    page = await store.list_instances(workflow.id, InstanceFilter(count=True, limit=1))
    assert page.total == sum(kept.values())
    for status in InstanceStatus:
        filtered = InstanceFilter(status=status, count=True, limit=1)
        assert (await store.list_instances(workflow.id, filtered)).total == kept.get(status, 0)
    return kept


async def test_counts_follow_every_change(
    engine: Engine, store: SqlStore, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Mixed)
    params = ["ok", "fail", "wait", "ok", "wait", "fail", "ok"]
    await engine.create_instances("mixed", [(f"i{k}", p) for k, p in enumerate(params)])
    assert await _assert_counts_exact(engine, store, "mixed") == {"queued": 7}

    await worker.run_until_idle(advance=False)
    assert await _assert_counts_exact(engine, store, "mixed") == {
        "complete": 3,
        "errored": 2,
        "waiting": 2,
    }
    await engine.change_status("mixed", "i2", "pause")
    await engine.change_status("mixed", "i4", "terminate")
    await engine.change_status("mixed", "i0", "restart")
    await engine.send_event("mixed", "i2", "go", None)
    assert await _assert_counts_exact(engine, store, "mixed") == {
        "complete": 2,
        "errored": 2,
        "paused": 1,
        "terminated": 1,
        "queued": 1,
    }
    await engine.change_status("mixed", "i2", "resume")
    await worker.run_until_idle(advance=False)
    assert await _assert_counts_exact(engine, store, "mixed") == {
        "complete": 4,
        "errored": 2,
        "terminated": 1,
    }


async def test_counts_follow_purges_and_deletes(
    engine: Engine, store: SqlStore, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Mixed)
    brief = {"success_retention": "1 second"}
    await engine.create_instances(
        "mixed", [InstanceRequest(f"i{k}", "ok", brief if k < 2 else None) for k in range(5)]
    )
    await worker.run_until_idle(advance=False)
    workflow = await engine.get_workflow("mixed")
    await clock.advance(2_000)
    assert await store.purge(clock.now_ms(), 100) == 2
    assert await _assert_counts_exact(engine, store, "mixed") == {"complete": 3}

    await engine.delete_workflow("mixed")
    assert await store.count_instances([workflow.id]) == {workflow.id: {}}
    # A workflow of the same name starts from nothing.
    await engine.deploy_class(Mixed)
    await engine.create_instance("mixed", instance_id="again")
    assert await _assert_counts_exact(engine, store, "mixed") == {"queued": 1}


async def test_counts_follow_statements_of_many_rows(
    engine: Engine, store: SqlStore, worker: Worker, clock: FakeClock
) -> None:
    """One statement inserting or deleting many rows is counted once per (workflow, status)
    group on PostgreSQL (migration 0005): the totals must still be exact."""
    await engine.deploy_class(Mixed)
    await engine.create_instances(
        "mixed", [(f"i{k}", "fail" if k % 3 == 0 else "ok") for k in range(300)]
    )
    await worker.run_until_idle(advance=False)
    workflow = await engine.get_workflow("mixed")
    columns = [c for c in instances.c if c.name not in ("pk", "id")]
    copy = instances.insert().from_select(
        ["id", *(c.name for c in columns)],
        select(instances.c.id + "-copy", *columns).where(instances.c.workflow_id == workflow.id),
    )
    await store._db.write(lambda conn: conn.execute(copy))
    assert await _assert_counts_exact(engine, store, "mixed") == {"complete": 400, "errored": 200}

    copies = instances.delete().where(instances.c.id.like("%-copy"))
    await store._db.write(lambda conn: conn.execute(copies))
    assert await _assert_counts_exact(engine, store, "mixed") == {"complete": 200, "errored": 100}
