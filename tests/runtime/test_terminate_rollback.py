"""Terminate with rollback: compensate what was done, newest first, then end terminated."""

from __future__ import annotations

from typing import Any

import pytest

from stepstone import RollbackContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import StepType
from stepstone.domain.status import Action, InstanceStatus
from stepstone.engine import Engine
from stepstone.worker.worker import Worker

UNDONE: list[tuple[str, Any, str]] = []
RAN: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    UNDONE.clear()
    RAN.clear()


def undo(ctx: RollbackContext) -> None:
    UNDONE.append((ctx.step_name, ctx.output, type(ctx.error).__name__))


def work(name: str) -> str:
    RAN.append(name)
    return f"{name}-done"


class Reserves(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("reserve", work, "reserve", rollback=undo)
        await step.do("charge", work, "charge", rollback=undo)
        await step.wait_for_event("approval", type="approved", timeout="1 day")
        return await step.do("ship", work, "ship", rollback=undo)


async def test_terminate_with_rollback_compensates_newest_first(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Reserves)
    instance = await engine.create_instance("reserves")
    await worker.run_until_idle(advance=False)

    changed = await engine.change_status("reserves", instance.id, Action.TERMINATE, rollback=True)
    assert changed.status is InstanceStatus.ROLLING_BACK
    await worker.run_until_idle(advance=False)

    view = await engine.get_instance("reserves", instance.id)
    assert view.instance.status is InstanceStatus.TERMINATED
    assert view.instance.rollback_outcome == "complete"
    assert UNDONE == [
        ("charge", "charge-done", "InstanceTerminatedError"),
        ("reserve", "reserve-done", "InstanceTerminatedError"),
    ]
    assert RAN == ["reserve", "charge"]  # replay did no new work: no ship
    rollbacks = [s.name for s in view.steps if s.type is StepType.ROLLBACK]
    assert rollbacks == ["rollback:charge", "rollback:reserve"]


async def test_terminate_with_rollback_before_any_step_just_terminates(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Reserves)
    instance = await engine.create_instance("reserves")
    await engine.change_status("reserves", instance.id, Action.TERMINATE, rollback=True)
    await worker.run_until_idle(advance=False)
    view = await engine.get_instance("reserves", instance.id)
    assert view.instance.status is InstanceStatus.TERMINATED
    assert view.instance.rollback_outcome is None
    assert RAN == []
    assert UNDONE == []


async def test_rollback_only_goes_with_terminate(engine: Engine) -> None:
    await engine.deploy_class(Reserves)
    instance = await engine.create_instance("reserves")
    with pytest.raises(Exception, match="rollback only goes with terminate"):
        await engine.change_status("reserves", instance.id, Action.PAUSE, rollback=True)
