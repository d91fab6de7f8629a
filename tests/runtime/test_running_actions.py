"""Status actions on an instance whose step is running right now.

A step awaits an ``asyncio.Event`` the test controls while the worker drives the instance in a
background task, so the test can act between "the step started" and "the step ended".
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import StepState
from stepstone.domain.status import Action, InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.runtime.signals import Notifier
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker, WorkerSettings
from tests.runtime.support import eventually, instance_of, status_of, steps_of, within

S = InstanceStatus


@dataclass
class Gate:
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: Counter[str] = field(default_factory=Counter)


GATE: list[Gate] = []


@pytest.fixture
def gate() -> AsyncIterator[Gate]:
    GATE[:] = [Gate()]
    yield GATE[0]
    GATE.clear()


async def held(name: str) -> str:
    """A step that runs until the test releases it."""
    gate = GATE[0]
    gate.calls[name] += 1
    gate.started.set()
    await gate.release.wait()
    return name


def quick(name: str) -> str:
    GATE[0].calls[name] += 1
    return name


class Held(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        first = await step.do("held", held, "held")
        second = await step.do("next", quick, "next")
        return [first, second]


async def start_running(
    engine: Engine, worker: Worker, gate: Gate
) -> tuple[str, asyncio.Task[int]]:
    await engine.deploy_class(Held)
    instance = await engine.create_instance("held")
    task = asyncio.create_task(worker.run_until_idle(advance=False), name="test worker")
    await within(gate.started.wait())
    assert await status_of(engine, "held", instance.id) is S.RUNNING
    return instance.id, task


async def test_pause_waits_for_the_running_step_then_pauses(
    engine: Engine, worker: Worker, gate: Gate
) -> None:
    instance_id, task = await start_running(engine, worker, gate)

    changed = await engine.change_status("held", instance_id, Action.PAUSE)
    assert changed.status is S.WAITING_FOR_PAUSE
    await worker.refresh()  # what the worker's loop does when the notifier fires
    gate.release.set()
    await within(task)

    paused = await instance_of(engine, "held", instance_id)
    assert paused.status is S.PAUSED
    assert paused.lease_owner is None
    assert gate.calls == {"held": 1}
    [record] = await steps_of(engine, "held", instance_id)
    assert record.state is StepState.COMPLETE  # the running step finished and was kept

    await engine.change_status("held", instance_id, Action.RESUME)
    await within(worker.run_until_idle(advance=False))
    assert await status_of(engine, "held", instance_id) is S.COMPLETE
    assert gate.calls == {"held": 1, "next": 1}


class HeldThenSleeps(WorkflowEntrypoint):
    name = "held-then-sleeps"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        first = await step.do("held", held, "held")
        await step.sleep("nap", "1 hour")
        return first


async def test_a_pause_the_run_has_not_heard_of_keeps_the_result_of_its_step(
    engine: Engine, worker: Worker, gate: Gate
) -> None:
    """The step's result was to ride with the move to sleep, which the pause refuses: it
    commits all the same, and the step never runs again."""
    await engine.deploy_class(HeldThenSleeps)
    instance = await engine.create_instance("held-then-sleeps")
    task = asyncio.create_task(worker.run_until_idle(advance=False), name="test worker")
    await within(gate.started.wait())
    await engine.change_status("held-then-sleeps", instance.id, Action.PAUSE)
    gate.release.set()  # no refresh: the run learns of the pause from its refused move
    await within(task)

    assert await status_of(engine, "held-then-sleeps", instance.id) is S.PAUSED
    found = await steps_of(engine, "held-then-sleeps", instance.id)
    assert [(r.name, r.state) for r in found] == [
        ("held", StepState.COMPLETE),
        ("nap", StepState.WAITING),
    ]

    await engine.change_status("held-then-sleeps", instance.id, Action.RESUME)
    await within(worker.run_until_idle())
    assert await status_of(engine, "held-then-sleeps", instance.id) is S.COMPLETE
    assert gate.calls == {"held": 1}


async def test_resume_withdraws_a_pending_pause(engine: Engine, worker: Worker, gate: Gate) -> None:
    instance_id, task = await start_running(engine, worker, gate)

    await engine.change_status("held", instance_id, Action.PAUSE)
    await worker.refresh()
    resumed = await engine.change_status("held", instance_id, Action.RESUME)
    assert resumed.status is S.RUNNING
    await worker.refresh()
    gate.release.set()
    await within(task)

    assert await status_of(engine, "held", instance_id) is S.COMPLETE
    assert gate.calls == {"held": 1, "next": 1}


async def test_terminate_a_running_instance_discards_its_step(
    engine: Engine, worker: Worker, gate: Gate
) -> None:
    instance_id, task = await start_running(engine, worker, gate)

    terminated = await engine.change_status("held", instance_id, Action.TERMINATE)
    assert terminated.status is S.TERMINATED
    gate.release.set()  # even if the step finishes, its result is not committed
    await within(task)

    assert await status_of(engine, "held", instance_id) is S.TERMINATED
    assert gate.calls == {"held": 1}
    assert await steps_of(engine, "held", instance_id) == []  # nothing was committed


async def test_refresh_cancels_a_terminated_instance_at_once(
    engine: Engine, worker: Worker, gate: Gate
) -> None:
    instance_id, task = await start_running(engine, worker, gate)

    await engine.change_status("held", instance_id, Action.TERMINATE)
    await worker.refresh()
    await within(task)  # returns without the step ever being released

    assert not gate.release.is_set()
    assert await status_of(engine, "held", instance_id) is S.TERMINATED
    assert gate.calls == {"held": 1}


class WatchedNotifier(Notifier):
    """The real notifier, which also tells when the worker loop has handled a change.

    The loop takes the changed instances, applies their users' actions, and then waits for
    the next signal: a ``wait`` after a ``take`` that held the instance means it was handled.
    """

    def __init__(self, pk: int) -> None:
        super().__init__()
        self.pk = pk
        self.taken = False
        self.handled = asyncio.Event()

    def take(self) -> tuple[set[int], set[int], bool]:
        changed, sent, work = super().take()
        self.taken = self.taken or self.pk in changed
        return changed, sent, work

    async def wait(self) -> None:
        if self.taken:
            self.handled.set()
        await super().wait()


async def test_the_worker_loop_applies_a_pause_it_is_notified_of(
    store: SqlStore, clock: FakeClock, gate: Gate
) -> None:
    engine = Engine(store, clock=clock)
    await engine.deploy_class(Held)
    instance = await engine.create_instance("held")
    notifier = WatchedNotifier(instance.pk)
    engine.notifier = notifier
    worker = Worker(
        store,
        clock=clock,
        loader=engine.loader,
        notifier=notifier,
        settings=WorkerSettings(hold_ms=0),
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop), name="worker loop")
    try:
        await within(gate.started.wait())
        await engine.change_status("held", instance.id, Action.PAUSE)
        await within(notifier.handled.wait())
        gate.release.set()

        async def paused() -> bool:
            return await status_of(engine, "held", instance.id) is S.PAUSED

        await eventually(paused, what="the instance to pause")
        assert gate.calls == {"held": 1}
    finally:
        stop.set()
        await within(loop)


async def test_restart_a_running_instance_runs_it_again_from_the_top(
    engine: Engine, worker: Worker, gate: Gate
) -> None:
    instance_id, task = await start_running(engine, worker, gate)

    restarted = await engine.change_status("held", instance_id, Action.RESTART)
    assert restarted.status is S.QUEUED
    gate.started.clear()
    await worker.refresh()  # the old run is cancelled; the loop claims the instance again

    await within(gate.started.wait())
    assert gate.calls == {"held": 2}
    gate.release.set()
    await within(task)

    done = await instance_of(engine, "held", instance_id)
    assert done.status is S.COMPLETE
    assert done.output == '["held","next"]'
    assert [s.name for s in await steps_of(engine, "held", instance_id)] == ["held", "next"]
