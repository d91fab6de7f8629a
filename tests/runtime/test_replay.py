"""Replay: ``run`` starts again from the top after every eviction; committed steps never re-run."""

from __future__ import annotations

from typing import Any

from stepstone import StepFailedError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import StepState, StepType
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, instance_of, output_of, status_of, steps_of


def counted(name: str, value: Any) -> Any:
    CALLS[name] += 1
    return value


class ThreeLegs(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        CALLS["run"] += 1
        a = await step.do("a", counted, "a", event.payload["start"])
        await step.sleep("first nap", "1 minute")
        b = await step.do("b", counted, "b", a + 1)
        await step.sleep("second nap", "1 hour")
        c = await step.do("c", counted, "c", b + 1)
        return [a, b, c]


class Repeats(WorkflowEntrypoint):
    """One name used three times: each occurrence is its own durable step."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        results = []
        for i in range(3):
            results.append(await step.do("tick", counted, f"tick{i}", i))
            await step.sleep("nap", 1_000)
        return results


def always_fails(value: str) -> str:
    CALLS["flaky"] += 1
    raise ValueError(f"no {value} today")


class CatchesFailure(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        CALLS["run"] += 1
        try:
            await step.do("doomed", always_fails, "luck", retries={"limit": 0})
        except StepFailedError as exc:
            caught = {"step": exc.step_name, "name": exc.error_name, "message": exc.message}
        await step.sleep("nap", "5 seconds")
        after = await step.do("after", counted, "after", "done")
        return {"caught": caught, "after": after}


async def test_committed_steps_run_once_across_evictions(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(ThreeLegs)
    instance = await engine.create_instance("three-legs", params={"start": 1})

    await worker.run_until_idle(advance=False)
    assert CALLS == {"run": 1, "a": 1}
    assert await status_of(engine, "three-legs", instance.id) is InstanceStatus.WAITING

    await clock.advance(59_999)
    assert await worker.run_until_idle(advance=False) == 0  # not due yet: nothing replays
    assert CALLS == {"run": 1, "a": 1}

    await clock.advance(1)
    await worker.run_until_idle(advance=False)
    assert CALLS == {"run": 2, "a": 1, "b": 1}

    await clock.advance(3_600_000)
    await worker.run_until_idle(advance=False)
    assert CALLS == {"run": 3, "a": 1, "b": 1, "c": 1}

    done = await instance_of(engine, "three-legs", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == [1, 2, 3]
    steps = await steps_of(engine, "three-legs", instance.id)
    assert [(s.name, s.type) for s in steps] == [
        ("a", StepType.STEP),
        ("first nap", StepType.SLEEP),
        ("b", StepType.STEP),
        ("second nap", StepType.SLEEP),
        ("c", StepType.STEP),
    ]
    assert [s.seq for s in steps] == sorted(s.seq for s in steps)
    assert all(len(s.attempts) == 1 for s in steps if s.type is StepType.STEP)


async def test_sleep_deadline_is_exact(engine: Engine, worker: Worker, clock: FakeClock) -> None:
    await engine.deploy_class(ThreeLegs)
    start = clock.now_ms()
    instance = await engine.create_instance("three-legs", params={"start": 0})
    await worker.run_until_idle(advance=False)

    nap = next(
        s for s in await steps_of(engine, "three-legs", instance.id) if s.name == "first nap"
    )
    assert nap.state is StepState.WAITING
    assert nap.wake_at == start + 60_000
    assert (await instance_of(engine, "three-legs", instance.id)).ready_at == start + 60_000


async def test_advance_runs_everything_and_output_is_stable(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(ThreeLegs)
    first = await engine.create_instance("three-legs", params={"start": 10})
    second = await engine.create_instance("three-legs", params={"start": 20})

    await worker.run_until_idle()

    assert output_of(await instance_of(engine, "three-legs", first.id)) == [10, 11, 12]
    assert output_of(await instance_of(engine, "three-legs", second.id)) == [20, 21, 22]
    assert CALLS["a"] == CALLS["b"] == CALLS["c"] == 2
    assert CALLS["run"] == 6


async def test_repeated_names_are_counted_occurrences(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(Repeats)
    instance = await engine.create_instance("repeats")

    await worker.run_until_idle()

    done = await instance_of(engine, "repeats", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == [0, 1, 2]
    assert CALLS == {"tick0": 1, "tick1": 1, "tick2": 1}
    keys = [(s.name, s.count) for s in await steps_of(engine, "repeats", instance.id)]
    assert keys == [("tick", 1), ("nap", 1), ("tick", 2), ("nap", 2), ("tick", 3), ("nap", 3)]


async def test_a_caught_failure_replays_as_the_same_failure(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(CatchesFailure)
    instance = await engine.create_instance("catches-failure")

    await worker.run_until_idle(advance=False)
    assert await status_of(engine, "catches-failure", instance.id) is InstanceStatus.WAITING
    await clock.advance(5_000)
    await worker.run_until_idle(advance=False)

    done = await instance_of(engine, "catches-failure", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == {
        "caught": {"step": "doomed", "name": "ValueError", "message": "no luck today"},
        "after": "done",
    }
    # The failed step ran once; on replay its recorded failure was raised again, not re-run.
    assert CALLS == {"run": 2, "flaky": 1, "after": 1}
    doomed = next(s for s in await steps_of(engine, "catches-failure", instance.id))
    assert doomed.state is StepState.ERRORED
    assert doomed.error_name == "ValueError"
