"""Sleeps and waits for events: buffered events, one event per wait, timeouts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stepstone import WaitForEventTimeoutError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.errors import ValidationError
from stepstone.domain.records import StepState, StepType
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import instance_of, output_of, status_of, step_named, steps_of


class TwoWaits(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        first = await step.wait_for_event("first", type="item", timeout="1 hour")
        second = await step.wait_for_event("second", type="item", timeout="1 hour")
        return [first.payload, second.payload, first.type]


class CatchesTimeout(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            await step.wait_for_event("approval", type="approved", timeout="10 minutes")
        except WaitForEventTimeoutError as exc:
            return {"timed_out": exc.step_name}
        return {"timed_out": None}


class IgnoresTimeout(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.wait_for_event("approval", type="approved", timeout="10 minutes")


class SleepsUntil(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep_until("alarm", event.payload["at"])
        return "woke"


class SleepsUntilDatetime(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep_until("alarm", datetime(2030, 1, 1, tzinfo=UTC))
        return "new year"


async def test_events_sent_before_the_wait_are_buffered_and_delivered_in_order(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(TwoWaits)
    instance = await engine.create_instance("two-waits")
    await engine.send_event("two-waits", instance.id, "item", {"n": 1})
    await engine.send_event("two-waits", instance.id, "other", {"n": 99})
    await engine.send_event("two-waits", instance.id, "item", {"n": 2})

    await worker.run_until_idle(advance=False)

    done = await instance_of(engine, "two-waits", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == [{"n": 1}, {"n": 2}, "item"]


async def test_one_event_wakes_one_wait(engine: Engine, worker: Worker, clock: FakeClock) -> None:
    await engine.deploy_class(TwoWaits)
    instance = await engine.create_instance("two-waits")
    await worker.run_until_idle(advance=False)
    assert await status_of(engine, "two-waits", instance.id) is InstanceStatus.WAITING

    await clock.advance(1_000)
    await engine.send_event("two-waits", instance.id, "item", "only one")
    await worker.run_until_idle(advance=False)

    assert await status_of(engine, "two-waits", instance.id) is InstanceStatus.WAITING
    first = await step_named(engine, "two-waits", instance.id, "first")
    second = await step_named(engine, "two-waits", instance.id, "second")
    assert first.state is StepState.COMPLETE
    assert first.ended_at == clock.now_ms()
    assert second.state is StepState.WAITING
    assert second.type is StepType.WAIT_FOR_EVENT
    assert second.event_type == "item"

    await engine.send_event("two-waits", instance.id, "item", "another")
    await worker.run_until_idle(advance=False)
    done = await instance_of(engine, "two-waits", instance.id)
    assert output_of(done) == ["only one", "another", "item"]


async def test_an_event_of_another_type_does_not_wake_the_wait(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(TwoWaits)
    instance = await engine.create_instance("two-waits")
    await worker.run_until_idle(advance=False)

    await engine.send_event("two-waits", instance.id, "noise", 1)
    await worker.run_until_idle(advance=False)

    first = await step_named(engine, "two-waits", instance.id, "first")
    assert first.state is StepState.WAITING
    assert await status_of(engine, "two-waits", instance.id) is InstanceStatus.WAITING


async def test_a_timed_out_wait_raises_into_run(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(CatchesTimeout)
    instance = await engine.create_instance("catches-timeout")
    start = clock.now_ms()

    await worker.run_until_idle()

    done = await instance_of(engine, "catches-timeout", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == {"timed_out": "approval"}
    assert clock.now_ms() == start + 600_000
    wait = await step_named(engine, "catches-timeout", instance.id, "approval")
    assert wait.state is StepState.ERRORED
    assert wait.error_name == "WaitForEventTimeoutError"


async def test_an_uncaught_wait_timeout_errors_the_instance(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(IgnoresTimeout)
    instance = await engine.create_instance("ignores-timeout")

    await worker.run_until_idle()

    failed = await instance_of(engine, "ignores-timeout", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "WaitForEventTimeoutError"
    assert failed.error_message is not None
    assert "approved" in failed.error_message


async def test_events_to_a_finished_instance_are_refused(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(CatchesTimeout)
    instance = await engine.create_instance("catches-timeout")
    await worker.run_until_idle()

    with pytest.raises(ValidationError, match="complete"):
        await engine.send_event("catches-timeout", instance.id, "approved", "late")


async def test_sleep_until_epoch_ms(engine: Engine, worker: Worker, clock: FakeClock) -> None:
    await engine.deploy_class(SleepsUntil)
    at = clock.now_ms() + 12_345
    instance = await engine.create_instance("sleeps-until", params={"at": at})

    await worker.run_until_idle(advance=False)
    alarm = await step_named(engine, "sleeps-until", instance.id, "alarm")
    assert alarm.wake_at == at

    await clock.set(at - 1)
    await worker.run_until_idle(advance=False)
    assert await status_of(engine, "sleeps-until", instance.id) is InstanceStatus.WAITING
    await clock.set(at)
    await worker.run_until_idle(advance=False)
    assert output_of(await instance_of(engine, "sleeps-until", instance.id)) == "woke"


async def test_sleep_until_a_datetime(engine: Engine, worker: Worker, clock: FakeClock) -> None:
    await engine.deploy_class(SleepsUntilDatetime)
    instance = await engine.create_instance("sleeps-until-datetime")

    await worker.run_until_idle()

    assert clock.now_ms() == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert output_of(await instance_of(engine, "sleeps-until-datetime", instance.id)) == "new year"
    [alarm] = await steps_of(engine, "sleeps-until-datetime", instance.id)
    assert alarm.type is StepType.SLEEP
