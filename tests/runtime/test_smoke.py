"""The shortest path through the engine: deploy, run, sleep, wait, finish."""

from __future__ import annotations

from typing import Any

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker


class Smoke(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        loaded = await step.do("load", lambda: {"id": event.payload["id"]})
        await step.sleep("nap", "2 seconds")
        approval = await step.wait_for_event("approval", type="ok", timeout="1 hour")
        return {"id": loaded["id"], "by": approval.payload}


async def test_instance_runs_to_completion(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Smoke)
    instance = await engine.create_instance("smoke", params={"id": 7})

    await worker.run_until_idle(advance=False)
    assert (
        await engine.get_instance("smoke", instance.id)
    ).instance.status is InstanceStatus.WAITING

    await clock.advance(2_000)
    await worker.run_until_idle(advance=False)
    await engine.send_event("smoke", instance.id, "ok", "alice")
    await worker.run_until_idle(advance=False)

    view = await engine.get_instance("smoke", instance.id)
    assert view.instance.status is InstanceStatus.COMPLETE
    assert view.instance.output == '{"id":7,"by":"alice"}'
    assert [s.name for s in view.steps] == ["load", "nap", "approval"]
