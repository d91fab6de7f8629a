"""A workflow's concurrency limit bounds how many of its instances workers hold at once."""

from __future__ import annotations

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.status import RUNNABLE
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage.sql import SqlStore


class Limited(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
        return None


class Free(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
        return None


async def test_claims_respect_the_limit_without_starving_others(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    limited = await engine.deploy_class(Limited)
    await engine.store.put_workflow(
        "local",
        "limited",
        class_name="Limited",
        script_name=limited.version.script_name,
        schedules={},
        now=clock.now_ms(),
        settings={"concurrency": {"limit": 2}},
    )
    await engine.deploy_class(Free)
    await engine.create_instances("limited", [(None, None)] * 5)
    await clock.advance(1)
    await engine.create_instances("free", [(None, None)] * 3)

    first = await store.claim("w1", clock.now_ms(), 30_000, 4, RUNNABLE)
    assert [c.instance.workflow_id for c in first] == [limited.workflow.id] * 2

    # At its limit, the workflow's other instances no longer fill the batch: the free ones run.
    second = await store.claim("w2", clock.now_ms(), 30_000, 4, RUNNABLE)
    assert len(second) == 3
    assert limited.workflow.id not in {c.instance.workflow_id for c in second}

    await clock.advance(30_001)  # every lease lapses: again at most two of the limited workflow
    third = await store.claim("w3", clock.now_ms(), 30_000, 10, RUNNABLE)
    assert [c.instance.workflow_id for c in third].count(limited.workflow.id) == 2
