"""The worker loop on the real clock: instances created beside a worker start at once (eager
start), and a worker that polls only once a minute still claims what its own runs left for
later exactly when it is due.

Every worker here polls once a minute, so anything that finishes within seconds was started
by a signal, not by a poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import Claim
from stepstone.domain.status import IN_PROGRESS, ON_CLAIM, RUNNABLE, InstanceStatus
from stepstone.engine import Engine
from stepstone.engine.engine import DEFAULT_TENANT
from stepstone.runtime.clock import FakeClock
from stepstone.runtime.executor import HoldBudget, InstanceRun
from stepstone.storage.base import NewInstance, StartLease
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker, WorkerSettings
from tests.runtime.support import eventually, instance_of, looping_worker, status_of, within

S = InstanceStatus
RELEASE: list[asyncio.Event] = []


async def released() -> str:
    await RELEASE[0].wait()
    return "released"


class Two(WorkflowEntrypoint):
    name = "two"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> int:
        await step.do("one", lambda: 1)
        return int(await step.do("two", lambda: 2))


class Held(WorkflowEntrypoint):
    name = "held"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        return str(await step.do("held", released))


class Limited(WorkflowEntrypoint):
    name = "limited"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> int:
        return int(await step.do("one", lambda: 1))


class Napper(WorkflowEntrypoint):
    name = "napper"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        await step.sleep("nap", "300 milliseconds")
        return "rested"


class Awaiter(WorkflowEntrypoint):
    name = "awaiter"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        await step.wait_for_event("go", type="go", timeout="1 hour")
        return "went"


@asynccontextmanager
async def running(store: SqlStore, engine: Engine, **settings: int) -> AsyncIterator[Worker]:
    RELEASE[:] = [asyncio.Event()]
    try:
        async with looping_worker(store, engine, poll_ms=60_000, **settings) as worker:
            yield worker
    finally:
        RELEASE[0].set()


async def completed(engine: Engine, workflow: str, instance_id: str) -> None:
    async def done() -> bool:
        return await status_of(engine, workflow, instance_id) is S.COMPLETE

    await eventually(done, what=f"{instance_id} to complete")


async def test_an_instance_created_beside_an_idle_worker_starts_at_once_under_its_lease(
    store: SqlStore,
) -> None:
    engine = Engine(store)
    await engine.deploy_class(Two)
    async with running(store, engine) as worker:
        [created] = await engine.create_instances("two", [("a", None)])

        assert created.status is S.RUNNING
        assert created.started_at is not None
        assert (created.lease_owner, created.lease_epoch) == (worker.id, 1)
        await completed(engine, "two", "a")
    done = await instance_of(engine, "two", "a")
    assert done.output == "2"
    assert done.lease_owner is None


async def test_new_instances_beyond_the_free_slots_queue_and_run_when_slots_free(
    store: SqlStore,
) -> None:
    engine = Engine(store)
    await engine.deploy_class(Held)
    async with running(store, engine, max_concurrency=2):
        created = await engine.create_instances("held", [(f"h{i}", None) for i in range(5)])

        assert [c.status for c in created] == [S.RUNNING] * 2 + [S.QUEUED] * 3
        RELEASE[0].set()
        for i in range(5):
            await completed(engine, "held", f"h{i}")


async def test_a_worker_with_work_waiting_does_not_let_new_instances_overtake_it(
    store: SqlStore,
) -> None:
    engine = Engine(store)
    await engine.deploy_class(Held)
    async with running(store, engine, max_concurrency=1) as worker:
        [first] = await engine.create_instances("held", [("first", None)])
        assert first.status is S.RUNNING
        [second] = await engine.create_instances("held", [("second", None)])
        assert second.status is S.QUEUED
        # Its slot frees and the worker claims the queued instance; the worker knows it was
        # full, so it starts nothing eagerly until its claims come back short again.
        RELEASE[0].set()
        await completed(engine, "held", "first")
        await completed(engine, "held", "second")

        async def eager_again() -> bool:  # its next claim comes back short
            return worker.room() == 1

        await eventually(eager_again, what="the worker to take new instances eagerly again")


async def test_new_instances_run_at_most_new_concurrency_at_once(store: SqlStore) -> None:
    engine = Engine(store)
    await engine.deploy_class(Held)
    async with running(store, engine, new_concurrency=2) as worker:
        created = await engine.create_instances("held", [(f"h{i}", None) for i in range(5)])

        assert [c.status for c in created] == [S.RUNNING] * 2 + [S.QUEUED] * 3
        assert worker.running == 2
        RELEASE[0].set()
        for i in range(5):
            await completed(engine, "held", f"h{i}")


async def test_new_runs_ending_while_a_claim_runs_free_their_slots_for_the_queued_ones(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim that finds the cap on new runs full, and the ends of those runs while it is
    at the database: the ends saw no backlog yet, so the claim must take what they freed."""
    engine = Engine(store)
    await engine.deploy_class(Held)
    async with running(store, engine, new_concurrency=2) as worker:
        at_database = asyncio.Event()
        ends_seen = asyncio.Event()
        claim = store.claim

        async def held_back_claim(*args: Any, **kwargs: Any) -> list[Claim]:
            if not at_database.is_set():  # the claim the new instances' arrival makes
                at_database.set()
                await ends_seen.wait()
            return await claim(*args, **kwargs)

        monkeypatch.setattr(store, "claim", held_back_claim)
        await engine.create_instances("held", [(f"h{i}", None) for i in range(5)])
        await within(at_database.wait())
        RELEASE[0].set()
        for i in range(2):
            await completed(engine, "held", f"h{i}")
        assert worker.running == 0
        ends_seen.set()
        for i in range(2, 5):
            await completed(engine, "held", f"h{i}")


async def test_a_workflow_with_a_concurrency_limit_is_only_ever_claimed(store: SqlStore) -> None:
    engine = Engine(store)
    deployed = await engine.deploy_class(Limited)
    await store.put_workflow(  # as the Cloudflare API's PUT with a concurrency setting does
        DEFAULT_TENANT,
        "limited",
        class_name="Limited",
        script_name=deployed.version.script_name,
        schedules={},
        now=engine.clock.now_ms(),
        settings={"concurrency": {"limit": 5}},
    )
    async with running(store, engine):
        [created] = await engine.create_instances("limited", [("l", None)])

        assert created.status is S.QUEUED
        assert created.lease_owner is None
        await completed(engine, "limited", "l")


async def test_a_sleeper_that_left_memory_is_claimed_when_its_timer_fires(
    store: SqlStore,
) -> None:
    engine = Engine(store)
    await engine.deploy_class(Napper)
    async with running(store, engine, hold_ms=0):
        await engine.create_instances("napper", [("n", None)])

        async def evicted() -> bool:
            found = await instance_of(engine, "napper", "n")
            return found.status is S.WAITING and found.lease_owner is None

        await eventually(evicted, what="the sleeper to leave memory")
        await within(completed(engine, "napper", "n"), timeout=3.0)


async def test_instances_handed_to_a_stopping_worker_go_back_to_the_database(
    store: SqlStore,
) -> None:
    engine = Engine(store)
    workflow = (await engine.deploy_class(Two)).workflow
    assert workflow.current_version_id is not None
    stopping = Worker(store, loader=engine.loader, settings=WorkerSettings(poll_ms=60_000))
    # The engine leased the instance to this worker, which stopped while it was created.
    now = engine.clock.now_ms()
    new = NewInstance(workflow.id, workflow.current_version_id, workflow.tenant, "s", "null")
    [made] = await store.create_instances(
        [new], now, lease=StartLease(stopping.id, now + 30_000, 1)
    )
    stopping.take([Claim(made, stopping.id, 1, steps=())])

    async def handed_back() -> bool:
        found = await instance_of(engine, "two", "s")
        return found.lease_owner is None

    await eventually(handed_back, what="the instance to be handed back")
    back = await instance_of(engine, "two", "s")
    assert back.status is S.WAITING
    assert back.ready_at is not None
    assert back.ready_at <= engine.clock.now_ms()
    async with running(store, engine):
        await completed(engine, "two", "s")


class Nap(WorkflowEntrypoint):
    name = "nap"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        await step.sleep("nap", int(event.payload["ms"]))
        return str(await step.do("after", lambda: "awake"))


class MoveLog:
    """The real store, noting the status every move of a run asks for."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.targets: list[InstanceStatus] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def move(self, claim: Claim, **kwargs: Any) -> bool:
        self.targets.append(kwargs["target"])
        return await self._store.move(claim, **kwargs)


@pytest.mark.parametrize(
    ("ms", "moves"),
    [(50, [S.COMPLETE]), (500, [S.WAITING, S.RUNNING, S.COMPLETE])],
)
async def test_a_held_wait_is_shown_as_waiting_unless_it_ends_at_once(
    store: SqlStore, clock: FakeClock, ms: int, moves: list[InstanceStatus]
) -> None:
    """A run held in memory for its timer shows as waiting, but not for a timer about to fire
    (an instance claimed just ahead of its timer): two moves would cost more than the wait."""
    engine = Engine(store, clock=clock)
    await engine.deploy_class(Nap)
    await engine.create_instances("nap", [("n", {"ms": ms})])
    [claim] = await store.claim("w", clock.now_ms(), 30_000, 1, RUNNABLE, start=ON_CLAIM)
    log = MoveLog(store)
    run = InstanceRun(claim, log, clock, engine.loader, hold_ms=1_000)  # type: ignore[arg-type]
    driving = asyncio.create_task(run.drive())

    async def settled() -> bool:
        if not run.quiescent:
            return False
        return moves[0] is not S.WAITING or await status_of(engine, "nap", "n") is S.WAITING

    await eventually(settled, what="the run to wait for its timer")
    await clock.advance(ms)
    await within(driving)
    done = await instance_of(engine, "nap", "n")
    assert (done.status, done.output) == (S.COMPLETE, '"awake"')
    assert log.targets == moves


async def test_waits_beyond_the_hold_budget_leave_memory_and_held_ones_leave_their_slots_free(
    store: SqlStore,
) -> None:
    """A held wait keeps its lease but not its slot (nor its place among new instances); past
    ``hold_max`` held waits, a wait leaves memory at once."""
    engine = Engine(store)
    await engine.deploy_class(Awaiter)
    await engine.deploy_class(Two)
    settings = {"max_concurrency": 1, "new_concurrency": 1, "hold_max": 1, "hold_ms": 60_000}
    async with running(store, engine, **settings) as worker:
        await engine.create_instances("awaiter", [("a", None)])

        async def waits(instance_id: str, owner: str | None) -> bool:
            found = await instance_of(engine, "awaiter", instance_id)
            return found.status is S.WAITING and found.lease_owner == owner

        await eventually(lambda: waits("a", worker.id), what="a held wait")
        await engine.create_instances("awaiter", [("b", None)])
        await eventually(lambda: waits("b", None), what="the wait past the budget to leave")
        assert await waits("a", worker.id)
        await engine.create_instances("two", [("t", None)])
        await completed(engine, "two", "t")

        for instance_id in ("a", "b"):
            await engine.send_event("awaiter", instance_id, "go", None)
            await completed(engine, "awaiter", instance_id)


async def test_a_run_claimed_ahead_of_its_timer_waits_for_it_whatever_the_hold_budget(
    store: SqlStore, clock: FakeClock
) -> None:
    """With no room to hold, a sleeper leaves memory at once; claimed again ahead of its timer,
    it waits for it in memory (it is about to run, not held), with no move to waiting."""
    engine = Engine(store, clock=clock)
    await engine.deploy_class(Nap)
    await engine.create_instances("nap", [("n", {"ms": 500})])
    budget = HoldBudget(0)
    log = MoveLog(store)
    [claim] = await store.claim("w", clock.now_ms(), 30_000, 1, RUNNABLE, start=ON_CLAIM)
    first = InstanceRun(claim, log, clock, engine.loader, hold_ms=1_000, holds=budget)  # type: ignore[arg-type]
    await within(first.drive())  # the clock never moves: it left at once

    assert log.targets == [S.WAITING]
    left = await instance_of(engine, "nap", "n")
    assert (left.lease_owner, left.ready_at) == (None, clock.now_ms() + 500)
    [again] = await store.claim(
        "w", clock.now_ms(), 30_000, 1, RUNNABLE, start=ON_CLAIM, first=IN_PROGRESS, ahead_ms=1_000
    )
    log.targets.clear()
    run = InstanceRun(again, log, clock, engine.loader, hold_ms=1_000, holds=budget)  # type: ignore[arg-type]
    driving = asyncio.create_task(run.drive())

    async def waiting() -> bool:
        return run.quiescent

    await eventually(waiting, what="the run to wait for its timer")
    assert budget.held == 0
    await clock.advance(500)
    await within(driving)
    assert log.targets == [S.COMPLETE]
    done = await instance_of(engine, "nap", "n")
    assert (done.status, done.output) == (S.COMPLETE, '"awake"')
