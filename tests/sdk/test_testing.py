"""``stepstone.testing``: what users get for their own workflow tests."""

from __future__ import annotations

from typing import Any

import pytest

from stepstone import StepFailedError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.testing import WorkflowTestEnv, run_workflow

CALLS: list[str] = []


def charge(amount: int) -> dict[str, Any]:
    CALLS.append("charge")
    return {"charged": amount}


class Checkout(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        charged = await step.do("charge", charge, event.payload["amount"])
        await step.sleep("cool off", "3 days")
        approval = await step.wait_for_event("approval", type="approved", timeout="1 week")
        try:
            await step.do("notify", _fail, retries={"limit": 0})
        except StepFailedError as exc:
            return {"charged": charged, "by": approval.payload["user"], "notify": exc.message}
        return None


def _fail() -> None:
    raise RuntimeError("mail server down")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


async def test_run_workflow_skips_sleeps_and_takes_injected_events() -> None:
    result = await run_workflow(
        Checkout, params={"amount": 5}, events=[("approved", {"user": "ada"})]
    )
    assert result.status == "complete"
    assert result.output == {"charged": {"charged": 5}, "by": "ada", "notify": "mail server down"}
    assert [s.name for s in result.steps] == ["charge", "cool off", "approval", "notify"]
    assert result.step("notify").error == "RuntimeError: mail server down"
    assert CALLS == ["charge"]


async def test_mocked_step_does_not_run_the_real_function() -> None:
    result = await run_workflow(
        Checkout,
        params={"amount": 5},
        events=[("approved", {"user": "bo"})],
        mocks={"charge": {"charged": 999}, "notify": RuntimeError("mocked failure")},
    )
    assert CALLS == []
    assert result.output["charged"] == {"charged": 999}
    assert result.output["notify"] == "mocked failure"


async def test_missing_event_times_out_when_sleeps_are_skipped() -> None:
    result = await run_workflow(Checkout, params={"amount": 1})
    assert result.status == "errored"
    assert result.error is not None
    assert "approved" in result.error


async def test_env_moves_time_step_by_step() -> None:
    async with WorkflowTestEnv() as env:
        instance_id = await env.start(Checkout, params={"amount": 2})
        await env.run(skip_sleeps=False)
        assert (await env.result(Checkout, instance_id)).status == "waiting"
        await env.advance("3 days")
        result = await env.result(Checkout, instance_id)
        assert result.step("cool off").state == "complete"
        assert result.step("approval").state == "waiting"
        await env.send_event(Checkout, instance_id, "approved", {"user": "cy"})
        await env.run(skip_sleeps=False)
        assert (await env.result(Checkout, instance_id)).status == "complete"
