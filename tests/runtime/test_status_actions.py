"""Pause, resume, terminate and restart through ``Engine.change_status``."""

from __future__ import annotations

from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.errors import IllegalTransitionError, ValidationError
from stepstone.domain.status import Action, InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, counted, instance_of, output_of, status_of, steps_of

S = InstanceStatus


class Napper(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        before = await step.do("before", counted, "before")
        await step.sleep("nap", "1 hour")
        after = await step.do("after", counted, "after")
        return {"params": event.payload, "steps": [before, after], "id": event.instance_id}


class OneStep(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("only", counted, "only")


async def test_pause_a_queued_instance_then_resume(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(OneStep)
    instance = await engine.create_instance("one-step")

    paused = await engine.change_status("one-step", instance.id, Action.PAUSE)
    assert paused.status is S.PAUSED
    assert await worker.run_until_idle() == 0
    assert CALLS["only"] == 0

    resumed = await engine.change_status("one-step", instance.id, "resume")
    assert resumed.status is S.QUEUED
    await worker.run_until_idle()
    assert await status_of(engine, "one-step", instance.id) is S.COMPLETE
    assert CALLS["only"] == 1


async def test_a_paused_sleeper_does_not_wake_until_resumed(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Napper)
    instance = await engine.create_instance("napper")
    await worker.run_until_idle(advance=False)
    assert await status_of(engine, "napper", instance.id) is S.WAITING

    await engine.change_status("napper", instance.id, Action.PAUSE)
    await clock.advance(2 * 3_600_000)
    assert await worker.run_until_idle() == 0
    assert await status_of(engine, "napper", instance.id) is S.PAUSED
    assert CALLS == {"before": 1}

    await engine.change_status("napper", instance.id, Action.RESUME)
    await worker.run_until_idle(advance=False)
    done = await instance_of(engine, "napper", instance.id)
    assert done.status is S.COMPLETE
    assert CALLS == {"before": 1, "after": 1}


async def test_resume_before_the_nap_ends_keeps_sleeping(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Napper)
    instance = await engine.create_instance("napper")
    await worker.run_until_idle(advance=False)
    await engine.change_status("napper", instance.id, Action.PAUSE)
    await engine.change_status("napper", instance.id, Action.RESUME)

    await worker.run_until_idle(advance=False)

    assert await status_of(engine, "napper", instance.id) is S.WAITING
    assert CALLS == {"before": 1}
    await worker.run_until_idle()
    assert await status_of(engine, "napper", instance.id) is S.COMPLETE


async def test_terminate_stops_everything_after(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Napper)
    instance = await engine.create_instance("napper")
    await worker.run_until_idle(advance=False)

    terminated = await engine.change_status("napper", instance.id, Action.TERMINATE)
    assert terminated.status is S.TERMINATED
    assert terminated.ended_at == clock.now_ms()

    await clock.advance(2 * 3_600_000)
    assert await worker.run_until_idle() == 0
    assert await status_of(engine, "napper", instance.id) is S.TERMINATED
    assert CALLS == {"before": 1}


async def test_terminate_a_queued_instance(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(OneStep)
    instance = await engine.create_instance("one-step")

    await engine.change_status("one-step", instance.id, Action.TERMINATE)

    assert await worker.run_until_idle() == 0
    assert CALLS["only"] == 0


async def test_restart_clears_history_and_runs_again_with_the_same_id_and_params(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Napper)
    instance = await engine.create_instance("napper", instance_id="order-7", params={"n": 7})
    await worker.run_until_idle()
    first = await instance_of(engine, "napper", "order-7")
    assert first.status is S.COMPLETE
    assert CALLS == {"before": 1, "after": 1}

    restarted = await engine.change_status("napper", "order-7", Action.RESTART)
    assert restarted.status is S.QUEUED
    assert restarted.pk == instance.pk
    assert restarted.output is None
    assert restarted.started_at is None
    assert await steps_of(engine, "napper", "order-7") == []

    await worker.run_until_idle()
    again = await instance_of(engine, "napper", "order-7")
    assert again.status is S.COMPLETE
    assert output_of(again) == {"params": {"n": 7}, "steps": ["before", "after"], "id": "order-7"}
    assert CALLS == {"before": 2, "after": 2}
    assert len(await steps_of(engine, "napper", "order-7")) == 3


async def test_restart_a_waiting_instance_drops_its_sleep(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Napper)
    instance = await engine.create_instance("napper")
    await worker.run_until_idle(advance=False)

    await engine.change_status("napper", instance.id, Action.RESTART)
    await worker.run_until_idle(advance=False)

    # Ran from the top: "before" again, and a new nap that started now.
    assert CALLS == {"before": 2}
    nap = next(s for s in await steps_of(engine, "napper", instance.id) if s.name == "nap")
    assert nap.started_at == clock.now_ms()


async def test_restart_an_errored_instance(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(OneStep)
    instance = await engine.create_instance("one-step")
    await engine.change_status("one-step", instance.id, Action.TERMINATE)
    await engine.change_status("one-step", instance.id, Action.RESTART)

    await worker.run_until_idle()

    assert await status_of(engine, "one-step", instance.id) is S.COMPLETE
    assert CALLS["only"] == 1


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        ([], Action.RESTART, "cannot restart an instance that is queued"),
        ([], Action.RESUME, "cannot resume an instance that is queued"),
        (["run"], Action.RESUME, "cannot resume an instance that is complete"),
        (["run"], Action.PAUSE, "cannot pause an instance that is complete"),
        (["run"], Action.TERMINATE, "cannot terminate an instance that is complete"),
        ([Action.TERMINATE], Action.TERMINATE, "cannot terminate an instance that is terminated"),
        ([Action.TERMINATE], Action.PAUSE, "cannot pause an instance that is terminated"),
    ],
)
async def test_illegal_transitions_are_refused(
    engine: Engine, worker: Worker, setup: list[Any], action: Action, message: str
) -> None:
    await engine.deploy_class(OneStep)
    instance = await engine.create_instance("one-step")
    for move in setup:
        if move == "run":
            await worker.run_until_idle()
        else:
            await engine.change_status("one-step", instance.id, move)
    before = await instance_of(engine, "one-step", instance.id)

    with pytest.raises(IllegalTransitionError, match=message):
        await engine.change_status("one-step", instance.id, action)

    assert await instance_of(engine, "one-step", instance.id) == before


async def test_an_unknown_action_is_a_validation_error(engine: Engine) -> None:
    await engine.deploy_class(OneStep)
    instance = await engine.create_instance("one-step")
    with pytest.raises(ValidationError, match="use one of pause, resume, terminate, restart"):
        await engine.change_status("one-step", instance.id, "explode")


def fails_first(name: str) -> str:
    CALLS[name] += 1
    if CALLS[name] == 1:
        raise ConnectionError("first attempt fails")
    return name


class RetriesOnce(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do(
            "retried", fails_first, "retried", retries={"limit": 1, "delay": "1 minute"}
        )


async def test_pause_during_a_retry_delay_holds_the_retry(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(RetriesOnce)
    instance = await engine.create_instance("retries-once")
    await worker.run_until_idle(advance=False)
    assert await status_of(engine, "retries-once", instance.id) is S.WAITING

    await engine.change_status("retries-once", instance.id, Action.PAUSE)
    await clock.advance(10 * 60_000)
    assert await worker.run_until_idle() == 0
    assert CALLS == {"retried": 1}

    await engine.change_status("retries-once", instance.id, Action.RESUME)
    await worker.run_until_idle(advance=False)
    done = await instance_of(engine, "retries-once", instance.id)
    assert output_of(done) == "retried"
    assert CALLS == {"retried": 2}
