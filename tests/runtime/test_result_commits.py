"""When a step's result commits: with the instance's next commit, which always comes before
anything could depend on it (the next step's function, a wait, the end).

Both backends. ``store.save_steps`` is counted on the real store: a result that rides with a
move (to sleep, to the end) costs no commit of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import StepState
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker
from tests.runtime.support import (
    CALLS,
    counted,
    eventually,
    instance_of,
    looping_worker,
    output_of,
    status_of,
    steps_of,
    within,
)

S = InstanceStatus

RETURNED: list[str] = []
"""The steps whose ``step.do`` returned, in order (appended by the workflow's code)."""
UNCOMMITTED: dict[str, list[str]] = {}
"""For each step, those of ``RETURNED`` not committed yet when its function started."""
ENGINE: list[Engine] = []


@pytest.fixture(autouse=True)
def _shared(engine: Engine) -> Iterator[None]:
    ENGINE[:] = [engine]
    yield
    ENGINE.clear()
    RETURNED.clear()
    UNCOMMITTED.clear()


@pytest.fixture
def saves(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records each ``save_steps`` call committed (the real call, counted)."""
    calls: list[int] = []
    real = store.save_steps

    async def counting(claim: Any, records: Any) -> None:
        await real(claim, records)
        calls.append(len(records))  # once committed: tests poll for it, then read the rows

    monkeypatch.setattr(store, "save_steps", counting)
    return calls


async def checked(instance_id: str, name: str) -> str:
    """A step that notes which steps returned before it but are not committed yet."""
    returned = list(RETURNED)
    found = await steps_of(ENGINE[0], "branches", instance_id)
    complete = {r.name for r in found if r.state is StepState.COMPLETE}
    UNCOMMITTED[name] = [n for n in returned if n not in complete]
    CALLS[name] += 1
    return name


class Branches(WorkflowEntrypoint):
    """Three branches at once, each two steps."""

    name = "branches"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def branch(k: int) -> None:
            for part in ("first", "then"):
                RETURNED.append(
                    await step.do(f"{k}-{part}", checked, event.instance_id, f"{k}-{part}")
                )

        await asyncio.gather(*(branch(k) for k in range(3)))
        return "done"


class StepThenEnd(WorkflowEntrypoint):
    name = "step-then-end"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("only", counted, "only")


class StepThenSleep(WorkflowEntrypoint):
    name = "step-then-sleep"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        first = await step.do("first", counted, "first")
        await step.sleep("nap", (event.payload or {}).get("ms", 3_600_000))
        return first


async def test_each_step_starts_after_the_results_before_it_are_committed(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Branches)
    instance = await engine.create_instance("branches")
    await within(worker.run_until_idle())

    assert output_of(await instance_of(engine, "branches", instance.id)) == "done"
    assert len(RETURNED) == 6
    # Whichever branch's commit carried a result, no step started before it was committed.
    assert dict(UNCOMMITTED) == {name: [] for name in RETURNED}
    assert set(CALLS.values()) == {1}


async def test_a_step_before_the_end_commits_with_the_end(
    engine: Engine, worker: Worker, saves: list[int]
) -> None:
    await engine.deploy_class(StepThenEnd)
    instance = await engine.create_instance("step-then-end")
    await within(worker.run_until_idle())

    assert saves == []  # no commit of its own
    done = await instance_of(engine, "step-then-end", instance.id)
    assert done.status is S.COMPLETE
    assert output_of(done) == "only"
    [record] = await steps_of(engine, "step-then-end", instance.id)
    assert (record.name, record.state, record.output) == ("only", StepState.COMPLETE, '"only"')


async def test_a_step_before_a_sleep_commits_with_the_move_to_sleep(
    engine: Engine, worker: Worker, saves: list[int]
) -> None:
    await engine.deploy_class(StepThenSleep)
    instance = await engine.create_instance("step-then-sleep")
    await within(worker.run_until_idle(advance=False))

    assert saves == []
    assert await status_of(engine, "step-then-sleep", instance.id) is S.WAITING
    found = await steps_of(engine, "step-then-sleep", instance.id)
    assert [(r.name, r.state) for r in found] == [
        ("first", StepState.COMPLETE),
        ("nap", StepState.WAITING),
    ]
    await within(worker.run_until_idle())
    assert await status_of(engine, "step-then-sleep", instance.id) is S.COMPLETE
    assert CALLS == {"first": 1}


async def test_a_step_before_a_short_wait_held_in_memory_commits_before_it_waits(
    store: SqlStore, engine: Engine, clock: FakeClock, saves: list[int]
) -> None:
    """A wait about to end is held without a move: the result gets a commit of its own."""
    await engine.deploy_class(StepThenSleep)
    instance = await engine.create_instance("step-then-sleep", params={"ms": 50})
    async with looping_worker(store, engine, clock, hold_ms=60_000) as worker:

        async def saved() -> bool:
            return len(saves) == 1  # the result, and the sleep it is in

        await eventually(saved, what="the step's result to be committed")
        found = await steps_of(engine, "step-then-sleep", instance.id)
        assert [(r.name, r.state) for r in found] == [
            ("first", StepState.COMPLETE),
            ("nap", StepState.WAITING),
        ]
        assert worker.running == 1  # still in memory, in its sleep

        await clock.advance(50)

        async def complete() -> bool:
            return await status_of(engine, "step-then-sleep", instance.id) is S.COMPLETE

        await eventually(complete, what="the instance to complete")
    assert CALLS == {"first": 1}
