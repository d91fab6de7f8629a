"""How a wait takes its event: read at once, consumed by the instance's next commit.

A wait's completion is deferred like a sleep's end: the run goes on with the event while the
event stays pending in the database until the commit that carries the wait's record (the next
step's result, a move) marks it consumed, in the same transaction. So a run lost in between
leaves the event pending, and the replay takes the very same one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import Event, StepState
from stepstone.domain.status import ON_CLAIM, RUNNABLE, InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.runtime.executor import InstanceRun
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker, WorkerSettings
from tests.runtime.support import (
    CALLS,
    eventually,
    instance_of,
    looping_worker,
    output_of,
    status_of,
    step_named,
    within,
)

GATE: dict[str, asyncio.Event] = {}
"""Set by the test to let the step after the wait finish."""


async def after_the_wait() -> str:
    CALLS["after"] += 1
    GATE.setdefault("open", asyncio.Event())
    await GATE["open"].wait()
    return "done"


class TakesThenWorks(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        got = await step.wait_for_event("go", type="go", timeout="1 hour")
        await step.do("after", after_the_wait)
        return got.payload


class WorksThenTakesTwo(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("work", after_the_wait)
        first = await step.wait_for_event("first", type="go", timeout="1 hour")
        second = await step.wait_for_event("second", type="go", timeout="1 hour")
        return [first.payload, second.payload]


class WaitsTwiceAtOnce(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        left, right = await asyncio.gather(
            step.wait_for_event("left", type="go", timeout="1 hour"),
            step.wait_for_event("right", type="go", timeout="1 hour"),
        )
        return [left.payload, right.payload]


async def test_a_run_lost_before_its_next_commit_leaves_the_event_for_the_replay(
    store: SqlStore, clock: FakeClock
) -> None:
    GATE.clear()
    engine = Engine(store, clock=clock)
    await engine.deploy_class(TakesThenWorks)
    instance = await engine.create_instance("takes-then-works")
    # Sent before the run starts: its wait takes the first at once, with no move to waiting
    # and back (whose commit would carry the taking).
    await engine.send_event("takes-then-works", instance.id, "go", "the first")
    await engine.send_event("takes-then-works", instance.id, "go", "the second")
    [claim] = await store.claim("first", clock.now_ms(), 30_000, 1, RUNNABLE, start=ON_CLAIM)
    run = InstanceRun(claim, store, clock, engine.loader, hold_ms=60_000)
    driving = asyncio.create_task(run.drive())
    await eventually(lambda: _true(CALLS["after"] == 1), what="the step after the wait")

    # The run has the event; the database still has it pending and the wait waiting.
    pending = await store.pending_event(instance.pk, "go")
    assert pending is not None
    assert pending.payload == '"the first"'
    wait = await step_named(engine, "takes-then-works", instance.id, "go")
    assert wait.state is StepState.WAITING

    # The run is lost (its process dies): nothing more is committed.
    driving.cancel()
    await asyncio.gather(driving, return_exceptions=True)

    # Another worker, once the lease has run out, replays and takes the same event.
    await clock.advance(31_000)
    GATE["open"].set()
    second = Worker(store, clock=clock, loader=engine.loader, settings=WorkerSettings(hold_ms=0))
    await within(second.run_until_idle(advance=False))

    done = await instance_of(engine, "takes-then-works", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == "the first"
    assert CALLS["after"] == 2  # the lost run's attempt never committed: it ran again
    left = await store.pending_event(instance.pk, "go")
    assert left is not None
    assert left.payload == '"the second"'


async def test_a_taken_event_is_consumed_with_the_next_commit(
    engine: Engine, worker: Worker
) -> None:
    GATE.clear()
    GATE["open"] = asyncio.Event()
    GATE["open"].set()
    await engine.deploy_class(TakesThenWorks)
    instance = await engine.create_instance("takes-then-works")
    await engine.send_event("takes-then-works", instance.id, "go", "only")
    await worker.run_until_idle(advance=False)

    done = await instance_of(engine, "takes-then-works", instance.id)
    assert (done.status, output_of(done)) == (InstanceStatus.COMPLETE, "only")
    assert await engine.store.pending_event(instance.pk, "go") is None
    wait = await step_named(engine, "takes-then-works", instance.id, "go")
    assert wait.state is StepState.COMPLETE
    assert wait.output is not None
    assert '"only"' in wait.output


async def test_two_waits_at_once_never_take_the_same_event(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    await engine.deploy_class(WaitsTwiceAtOnce)
    instance = await engine.create_instance("waits-twice-at-once")
    [claim] = await store.claim("only", clock.now_ms(), 30_000, 1, RUNNABLE, start=ON_CLAIM)
    run = InstanceRun(claim, store, clock, engine.loader, hold_ms=60_000)
    driving = asyncio.create_task(run.drive())
    await eventually(lambda: _true(run.quiescent), what="both waits")

    await engine.send_event("waits-twice-at-once", instance.id, "go", "one")
    run.wake()
    await eventually(
        lambda: _true(len(run._taken) == 1 and run.quiescent), what="one wait to take it"
    )
    await engine.send_event("waits-twice-at-once", instance.id, "go", "two")
    run.wake()
    await within(driving)

    done = await instance_of(engine, "waits-twice-at-once", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert sorted(output_of(done)) == ["one", "two"]
    assert await store.pending_event(instance.pk, "go") is None


async def test_an_event_sent_to_a_run_held_here_is_handed_to_it_without_a_read(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(store)
    await engine.deploy_class(TakesThenWorks)
    GATE.clear()
    GATE["open"] = asyncio.Event()
    GATE["open"].set()
    async with looping_worker(store, engine, poll_ms=60_000, hold_ms=60_000):
        await engine.create_instances("takes-then-works", [("a", None)])

        async def waits() -> bool:
            return await status_of(engine, "takes-then-works", "a") is InstanceStatus.WAITING

        await eventually(waits, what="the run to wait, held")
        reads: list[str] = []
        read = store.pending_event

        async def counted(pk: int, type: str, skip: Collection[int] = ()) -> Event | None:
            reads.append(type)
            return await read(pk, type, skip)

        monkeypatch.setattr(store, "pending_event", counted)
        await engine.send_event("takes-then-works", "a", "go", "handed over")

        async def done() -> bool:
            return await status_of(engine, "takes-then-works", "a") is InstanceStatus.COMPLETE

        await eventually(done, what="the run to complete")
    done_instance = await instance_of(engine, "takes-then-works", "a")
    assert output_of(done_instance) == "handed over"
    assert reads == []
    assert await store.pending_event(done_instance.pk, "go") is None  # consumed all the same


async def test_an_event_sent_behind_a_pending_one_is_not_handed_over_ahead_of_it(
    store: SqlStore,
) -> None:
    engine = Engine(store)
    await engine.deploy_class(WorksThenTakesTwo)
    GATE.clear()
    GATE["open"] = asyncio.Event()
    await engine.create_instance("works-then-takes-two", instance_id="a")
    await engine.send_event("works-then-takes-two", "a", "go", "sent first")  # nobody runs it
    async with looping_worker(store, engine, poll_ms=60_000, hold_ms=60_000):
        await eventually(lambda: _true(CALLS["after"] == 1), what="the run's first step")
        # Sent to the run held here, while the first event is still pending: the wait must
        # take the first one first, so this one cannot be handed over.
        await engine.send_event("works-then-takes-two", "a", "go", "sent second")
        GATE["open"].set()

        async def done() -> bool:
            found = await status_of(engine, "works-then-takes-two", "a")
            return found is InstanceStatus.COMPLETE

        await eventually(done, what="the run to complete")
    done_instance = await instance_of(engine, "works-then-takes-two", "a")
    assert output_of(done_instance) == ["sent first", "sent second"]


async def _true(value: bool) -> bool:
    return value
