"""The decorator form: ``@step.do("name")``, with dependencies injected by parameter name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stepstone import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import StepState
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, instance_of, output_of, step_named, steps_of

ATTEMPTS: list[int] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ATTEMPTS.clear()
    yield
    ATTEMPTS.clear()


class Pipeline(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        @step.do("fetch the order")
        async def fetch() -> dict[str, int]:
            CALLS["fetch"] += 1
            return {"qty": event.payload["qty"]}

        @step.do("price it")
        def price(fetch: dict[str, int]) -> int:  # sync: runs in a thread
            CALLS["price"] += 1
            return fetch["qty"] * 5

        @step.do("charge", {"retries": {"limit": 2, "delay": "30 seconds", "backoff": "constant"}})
        async def charge(price: int, fetch: dict[str, int], ctx: StepContext) -> dict[str, Any]:
            CALLS["charge"] += 1
            ATTEMPTS.append(ctx.attempt)
            if ctx.attempt == 1:
                raise ConnectionError("gateway hiccup")
            return {"total": price, "qty": fetch["qty"], "step": ctx.step_name}

        receipt = await charge()
        await step.sleep("settle", "1 minute")
        again = await charge()  # a decorated step runs once per run, however often awaited
        return {"receipt": receipt, "same": again == receipt}


class Unnamed(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        @step.do()
        def load_user() -> str:
            return "ada"

        @step.do(timeout="5 seconds")
        def greet(load_user: str) -> str:
            return f"hello {load_user}"

        return await greet()


async def test_decorated_steps_inject_dependencies_and_run_once(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Pipeline)
    instance = await engine.create_instance("pipeline", params={"qty": 3})

    await worker.run_until_idle()

    done = await instance_of(engine, "pipeline", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == {
        "receipt": {"total": 15, "qty": 3, "step": "charge"},
        "same": True,
    }
    # fetch is a dependency of two steps, and the instance replayed after its retry and its
    # sleep: still one execution each (and one failed, one good attempt of charge).
    assert CALLS == {"fetch": 1, "price": 1, "charge": 2}
    assert ATTEMPTS == [1, 2]
    names = [s.name for s in await steps_of(engine, "pipeline", instance.id)]
    assert names == ["fetch the order", "price it", "charge", "settle"]


async def test_the_decorator_config_is_the_step_config(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Pipeline)
    instance = await engine.create_instance("pipeline", params={"qty": 1})

    await worker.run_until_idle()

    charge = await step_named(engine, "pipeline", instance.id, "charge")
    assert charge.state is StepState.COMPLETE
    assert charge.config is not None
    assert charge.config["retries"] == {"limit": 2, "delay": 30_000, "backoff": "constant"}
    first, second = charge.attempts
    assert (first.success, first.error_name) == (False, "ConnectionError")
    assert second.start - first.start == 30_000


async def test_a_decorator_without_a_name_uses_the_function_name(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Unnamed)
    instance = await engine.create_instance("unnamed")

    await worker.run_until_idle()

    assert output_of(await instance_of(engine, "unnamed", instance.id)) == "hello ada"
    steps = await steps_of(engine, "unnamed", instance.id)
    assert [s.name for s in steps] == ["load_user", "greet"]
    assert steps[1].config is not None
    assert steps[1].config["timeout"] == 5_000
