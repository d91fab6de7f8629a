"""Code that no longer matches an instance's history errors the instance, clearly."""

from __future__ import annotations

from typing import Any

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, counted, instance_of, steps_of


class Original(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("load", counted, "load")
        await step.sleep("cool off", "1 minute")
        await step.do("ship", counted, "ship")
        return "shipped"


class SleepBecameDo(WorkflowEntrypoint):
    """The same names, but "cool off" is now a ``do``."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("load", counted, "load")
        await step.do("cool off", counted, "cool off")
        await step.do("ship", counted, "ship")
        return "shipped"


class SkipsTheSleep(WorkflowEntrypoint):
    """Finishes without reaching the recorded "cool off" sleep."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("load", counted, "load")
        return "early"


class RenamedStep(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("load everything", counted, "load everything")
        await step.sleep("cool off", "1 minute")
        return "renamed"


async def start_and_swap(
    engine: Engine, worker: Worker, clock: FakeClock, replacement: type[WorkflowEntrypoint]
) -> str:
    """Run ``Original`` up to its sleep, then swap the version's code under the instance."""
    deployed = await engine.deploy_class(Original)
    instance = await engine.create_instance("original")
    await worker.run_until_idle(advance=False)
    assert CALLS == {"load": 1}
    engine.loader.pin(deployed.version.id, replacement)
    await clock.advance(60_000)
    await worker.run_until_idle(advance=False)
    return instance.id


async def test_a_sleep_called_as_a_do_is_a_determinism_error(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    instance_id = await start_and_swap(engine, worker, clock, SleepBecameDo)

    failed = await instance_of(engine, "original", instance_id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "DeterminismError"
    assert failed.error_message is not None
    assert "'cool off'" in failed.error_message
    assert "sleep" in failed.error_message
    assert "step" in failed.error_message
    # Nothing ran in place of the recorded sleep, nor after it.
    assert CALLS == {"load": 1}
    assert [s.name for s in await steps_of(engine, "original", instance_id)] == [
        "load",
        "cool off",
    ]


async def test_finishing_without_reaching_a_recorded_step_is_a_determinism_error(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    instance_id = await start_and_swap(engine, worker, clock, SkipsTheSleep)

    failed = await instance_of(engine, "original", instance_id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "DeterminismError"
    assert failed.error_message is not None
    assert "'cool off'" in failed.error_message
    assert "no longer reaches" in failed.error_message
    assert failed.output is None


async def test_a_renamed_step_is_a_determinism_error_not_a_rerun(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    instance_id = await start_and_swap(engine, worker, clock, RenamedStep)

    failed = await instance_of(engine, "original", instance_id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "DeterminismError"
    assert failed.error_message is not None
    assert "'load'" in failed.error_message


async def test_unchanged_code_replays_cleanly(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    instance_id = await start_and_swap(engine, worker, clock, Original)

    done = await instance_of(engine, "original", instance_id)
    assert done.status is InstanceStatus.COMPLETE
    assert CALLS == {"load": 1, "ship": 1}


class SwallowsEverything(WorkflowEntrypoint):
    """Changed code that also catches every exception around the changed step."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("load", counted, "load")
        try:
            await step.do("cool off", counted, "cool off")
        except Exception:
            CALLS["swallowed"] += 1
        await step.do("ship", counted, "ship")
        return "shipped anyway"


async def test_user_code_cannot_swallow_a_determinism_error(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    instance_id = await start_and_swap(engine, worker, clock, SwallowsEverything)

    failed = await instance_of(engine, "original", instance_id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "DeterminismError"
    assert failed.error_message is not None
    assert "'cool off'" in failed.error_message
    assert CALLS["ship"] == 0  # no new step runs once the history has diverged
