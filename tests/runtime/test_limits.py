"""Limits: 1 MiB of JSON per output, params and event payload; a step budget per instance."""

from __future__ import annotations

from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.errors import (
    NotSerializableError,
    PayloadTooLargeError,
    WorkflowDefinitionError,
)
from stepstone.domain.limits import MAX_JSON_BYTES
from stepstone.domain.records import StepState
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, instance_of, output_of, step_named, steps_of

TOO_BIG = "x" * MAX_JSON_BYTES  # with its quotes, two bytes over the limit


def huge() -> str:
    CALLS["huge"] += 1
    return TOO_BIG


def not_json() -> object:
    CALLS["not_json"] += 1
    return {"when": object()}


class BigOutput(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("huge", huge, retries={"limit": 3, "delay": 1})


class OddOutput(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("odd", not_json, retries={"limit": 3, "delay": 1})


class OddReturn(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return {1, 2, 3}


class Echo(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        got = await step.wait_for_event("wait", type="data", timeout="1 hour")
        return len(got.payload)


def count_step(i: int) -> int:
    CALLS[f"step {i}"] += 1
    return i


class ThreeSteps(WorkflowEntrypoint):
    limits = {"steps": 3}  # noqa: RUF012 (the class attribute users write)

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        for i in range(event.payload["steps"]):
            await step.do(f"step {i}", count_step, i)
        return "within budget"


async def test_an_oversize_step_output_errors_the_step_without_retries(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(BigOutput)
    instance = await engine.create_instance("big-output")

    await worker.run_until_idle()

    record = await step_named(engine, "big-output", instance.id, "huge")
    assert record.state is StepState.ERRORED
    assert record.output is None
    assert len(record.attempts) == 1
    assert CALLS["huge"] == 1  # retrying cannot make the output smaller
    assert record.error_name == "PayloadTooLargeError"
    assert record.error_message == (
        "the output of step 'huge' is 1,048,578 bytes of JSON; the limit is 1,048,576 bytes"
    )
    failed = await instance_of(engine, "big-output", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "PayloadTooLargeError"


async def test_a_non_json_step_output_errors_the_step(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(OddOutput)
    instance = await engine.create_instance("odd-output")

    await worker.run_until_idle()

    record = await step_named(engine, "odd-output", instance.id, "odd")
    assert record.state is StepState.ERRORED
    assert record.error_name == "NotSerializableError"
    assert record.error_message is not None
    assert "the output of step 'odd' is not JSON-serialisable" in record.error_message
    assert CALLS["not_json"] == 1


async def test_a_non_json_return_value_errors_the_instance(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(OddReturn)
    instance = await engine.create_instance("odd-return")

    await worker.run_until_idle()

    failed = await instance_of(engine, "odd-return", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "NotSerializableError"
    assert failed.error_message is not None
    assert "the workflow's return value" in failed.error_message


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (TOO_BIG, PayloadTooLargeError, "the instance params is 1,048,578 bytes"),
        ({"at": object()}, NotSerializableError, "the instance params is not JSON"),
        ({"bad": float("nan")}, NotSerializableError, "the instance params is not JSON"),
    ],
)
async def test_bad_params_create_nothing(
    engine: Engine, params: Any, error: type[Exception], message: str
) -> None:
    await engine.deploy_class(Echo)

    with pytest.raises(error, match=message):
        await engine.create_instance("echo", params=params, instance_id="refused")

    assert (await engine.list_instances("echo")).items == []


async def test_a_batch_with_one_bad_params_creates_nothing(engine: Engine) -> None:
    await engine.deploy_class(Echo)

    with pytest.raises(PayloadTooLargeError):
        await engine.create_instances("echo", [("fine", {"a": 1}), ("too-big", TOO_BIG)])

    assert (await engine.list_instances("echo")).items == []


async def test_params_just_under_the_limit_are_accepted(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(Echo)
    biggest = "x" * (MAX_JSON_BYTES - 2)

    instance = await engine.create_instance("echo", params=biggest)

    assert len(instance.params.encode()) == MAX_JSON_BYTES


async def test_an_oversize_event_payload_is_refused(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(Echo)
    instance = await engine.create_instance("echo")
    await worker.run_until_idle(advance=False)

    with pytest.raises(PayloadTooLargeError, match="the event payload"):
        await engine.send_event("echo", instance.id, "data", TOO_BIG)
    await worker.run_until_idle(advance=False)

    wait = await step_named(engine, "echo", instance.id, "wait")
    assert wait.state is StepState.WAITING  # the refused event was not stored
    await engine.send_event("echo", instance.id, "data", "x" * 1_000)
    await worker.run_until_idle(advance=False)
    assert output_of(await instance_of(engine, "echo", instance.id)) == 1_000


async def test_the_step_limit_errors_the_instance(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(ThreeSteps)
    instance = await engine.create_instance("three-steps", params={"steps": 4})

    await worker.run_until_idle()

    failed = await instance_of(engine, "three-steps", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "StepLimitError"
    assert failed.error_message is not None
    assert "limit of 3 steps" in failed.error_message
    assert CALLS == {"step 0": 1, "step 1": 1, "step 2": 1}
    assert len(await steps_of(engine, "three-steps", instance.id)) == 3


async def test_exactly_the_step_limit_is_allowed(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(ThreeSteps)
    instance = await engine.create_instance("three-steps", params={"steps": 3})

    await worker.run_until_idle()

    assert output_of(await instance_of(engine, "three-steps", instance.id)) == "within budget"


@pytest.mark.parametrize("limits", [{"steps": 0}, {"steps": "many"}, {"stepz": 3}])
async def test_a_bad_step_limit_is_refused_at_deploy(
    engine: Engine, limits: dict[str, Any]
) -> None:
    bad = type("BadLimits", (ThreeSteps,), {"limits": limits, "__module__": __name__})

    with pytest.raises(WorkflowDefinitionError, match="limits"):
        await engine.deploy_class(bad)
