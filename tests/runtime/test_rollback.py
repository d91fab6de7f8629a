"""Rollback: an uncaught failure runs the compensations newest first, as ``rollback`` steps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stepstone import (
    RollbackContext,
    StepFailedError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from stepstone.domain.records import Instance, StepState, StepType
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.engine.engine import DEFAULT_TENANT
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, instance_of, steps_of

S = InstanceStatus
SEEN: list[dict[str, Any]] = []
ENGINE: list[Engine] = []
"""The test's engine, so a compensation can look at its instance while it runs."""


@pytest.fixture(autouse=True)
def _reset(engine: Engine) -> Iterator[None]:
    SEEN.clear()
    ENGINE[:] = [engine]
    yield
    SEEN.clear()
    ENGINE.clear()


async def only_instance(engine: Engine) -> Instance:
    [workflow], _total = await engine.store.list_workflows(DEFAULT_TENANT)
    [instance] = (await engine.list_instances(workflow.name)).items
    return instance


async def undo(ctx: RollbackContext) -> str:
    """Record what the compensation saw, including the instance's status at that moment."""
    instance = await only_instance(ENGINE[0])
    SEEN.append(
        {
            "step": ctx.step_name,
            "count": ctx.step_count,
            "output": ctx.output,
            "error": type(ctx.error).__name__,
            "status": instance.status,
        }
    )
    return f"undid {ctx.step_name}"


def fail(message: str) -> None:
    raise ValueError(message)


class BooksTrip(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        flight = await step.do("flight", lambda: {"flight": "LH400"}, rollback=undo)
        hotel = await step.do("hotel", lambda: {"hotel": "Adlon"}, rollback=undo)
        await step.do("no undo", lambda: "nothing to compensate")
        await step.do("car", fail, "no cars left", retries={"limit": 0})
        return [flight, hotel]


def refund_fails(ctx: RollbackContext) -> None:
    CALLS["refund"] += 1
    raise RuntimeError("refund service down")


class ChargesCard(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("reserve", lambda: "seat 12A", rollback=undo)
        await step.do(
            "charge",
            lambda: {"charged": 100},
            rollback=refund_fails,
            rollback_config={"retries": {"limit": 1, "delay": "1 minute"}},
        )
        await step.do("ship", fail, "warehouse closed", retries={"limit": 0})


class CatchesAndContinues(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("reserve", lambda: "seat", rollback=undo)
        try:
            await step.do("charge", fail, "declined", retries={"limit": 0})
        except StepFailedError:
            return "handled"
        return "charged"


async def test_compensations_run_newest_first_while_rolling_back(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(BooksTrip)
    instance = await engine.create_instance("books-trip")

    await worker.run_until_idle()

    failed = await instance_of(engine, "books-trip", instance.id)
    assert failed.status is S.ERRORED
    assert (failed.error_name, failed.error_message) == ("ValueError", "no cars left")
    assert failed.rollback_outcome == "complete"
    assert failed.rollback_error_name is None
    assert SEEN == [
        {
            "step": "hotel",
            "count": 1,
            "output": {"hotel": "Adlon"},
            "error": "StepFailedError",
            "status": S.ROLLING_BACK,
        },
        {
            "step": "flight",
            "count": 1,
            "output": {"flight": "LH400"},
            "error": "StepFailedError",
            "status": S.ROLLING_BACK,
        },
    ]
    steps = await steps_of(engine, "books-trip", instance.id)
    rollbacks = [s for s in steps if s.type is StepType.ROLLBACK]
    assert [s.name for s in rollbacks] == ["rollback:hotel", "rollback:flight"]
    assert all(s.state is StepState.COMPLETE for s in rollbacks)
    assert rollbacks[0].output == '"undid hotel"'
    assert rollbacks[0].seq < rollbacks[1].seq


async def test_a_failing_compensation_is_retried_then_recorded_as_failed(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(ChargesCard)
    instance = await engine.create_instance("charges-card")

    await worker.run_until_idle()

    failed = await instance_of(engine, "charges-card", instance.id)
    assert failed.status is S.ERRORED
    assert (failed.error_name, failed.error_message) == ("ValueError", "warehouse closed")
    assert failed.rollback_outcome == "failed"
    assert failed.rollback_error_name == "RuntimeError"
    assert failed.rollback_error_message == "refund service down"
    assert CALLS["refund"] == 2  # rollback_config allowed one retry
    # An earlier failed compensation does not stop the older ones.
    assert [s["step"] for s in SEEN] == ["reserve"]
    steps = {s.name: s for s in await steps_of(engine, "charges-card", instance.id)}
    refund = steps["rollback:charge"]
    assert refund.state is StepState.ERRORED
    assert [a.success for a in refund.attempts] == [False, False]
    assert refund.attempts[1].start - refund.attempts[0].start == 60_000
    assert steps["rollback:reserve"].state is StepState.COMPLETE


async def test_a_caught_failure_rolls_nothing_back(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(CatchesAndContinues)
    instance = await engine.create_instance("catches-and-continues")

    await worker.run_until_idle()

    done = await instance_of(engine, "catches-and-continues", instance.id)
    assert done.status is S.COMPLETE
    assert done.rollback_outcome is None
    assert SEEN == []
    assert all(
        s.type is not StepType.ROLLBACK
        for s in await steps_of(engine, "catches-and-continues", instance.id)
    )


async def test_a_compensation_waiting_for_its_retry_stays_rolling_back(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(ChargesCard)
    instance = await engine.create_instance("charges-card")

    await worker.run_until_idle(advance=False)

    waiting = await instance_of(engine, "charges-card", instance.id)
    assert waiting.status is S.ROLLING_BACK
    assert waiting.lease_owner is None
    assert waiting.ready_at == clock.now_ms() + 60_000
    assert CALLS["refund"] == 1
    assert SEEN == []

    await clock.advance(60_000)
    await worker.run_until_idle(advance=False)
    failed = await instance_of(engine, "charges-card", instance.id)
    assert failed.status is S.ERRORED
    assert failed.rollback_outcome == "failed"
    assert CALLS["refund"] == 2
    assert [s["step"] for s in SEEN] == ["reserve"]
