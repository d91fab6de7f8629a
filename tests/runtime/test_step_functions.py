"""What ``step.do`` accepts as a step: sync or async callables, positional args, ``ctx``."""

from __future__ import annotations

import functools
import threading
from typing import Any

from stepstone import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.worker.worker import Worker
from tests.runtime.support import instance_of, output_of


def add(*numbers: int) -> int:
    return sum(numbers)


def where_am_i() -> bool:
    return threading.current_thread() is threading.main_thread()


async def async_where_am_i() -> bool:
    return threading.current_thread() is threading.main_thread()


async def scale(value: int, factor: int) -> int:
    return value * factor


def describe(label: str, ctx: StepContext) -> dict[str, Any]:
    return {"label": label, "name": ctx.step_name, "count": ctx.step_count, "try": ctx.attempt}


class Multiplier:
    """A callable object with an async ``__call__``."""

    def __init__(self, by: int) -> None:
        self.by = by

    async def __call__(self, value: int) -> int:
        return value * self.by


class Callables(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return {
            "args": await step.do("add", add, 1, 2, 3),
            "sync in thread": not await step.do("sync", where_am_i),
            "async in loop": await step.do("async", async_where_am_i),
            "async args": await step.do("scale", scale, 7, 6),
            "lambda to coroutine": await step.do("lazy", lambda: scale(2, 5)),
            "partial": await step.do("partial", functools.partial(scale, factor=3), 4),
            "callable object": await step.do("object", Multiplier(10), 9),
            "ctx": [await step.do("describe", describe, "x") for _ in range(2)],
            "none": await step.do("nothing", lambda: None),
        }


class BadConfig(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("bad", add, 1, retries={"limit": 2, "backof": "linear"})


async def test_every_kind_of_callable_is_a_step(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(Callables)
    instance = await engine.create_instance("callables")

    await worker.run_until_idle()

    done = await instance_of(engine, "callables", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == {
        "args": 6,
        "sync in thread": True,
        "async in loop": True,
        "async args": 42,
        "lambda to coroutine": 10,
        "partial": 12,
        "callable object": 90,
        "ctx": [
            {"label": "x", "name": "describe", "count": 1, "try": 1},
            {"label": "x", "name": "describe", "count": 2, "try": 1},
        ],
        "none": None,
    }


async def test_a_bad_step_config_errors_the_instance_with_an_explanation(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(BadConfig)
    instance = await engine.create_instance("bad-config")

    await worker.run_until_idle()

    failed = await instance_of(engine, "bad-config", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "ValidationError"
    assert failed.error_message == "unknown retries option(s): backof"
    assert (await engine.get_instance("bad-config", instance.id)).steps == []
