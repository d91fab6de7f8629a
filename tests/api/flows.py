"""Workflows the API tests deploy: in this process (``deploy_class``) or to a real server.

Only ``stepstone`` and the standard library are imported, so the file works as an uploaded
script too. ``RUNS`` counts step executions when the classes run in the test's own process.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from stepstone import (
    RollbackContext,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

RUNS: Counter[str] = Counter()


def _fresh(name: str) -> str:
    """A value that differs on every execution, so a re-run step shows a new output."""
    RUNS[name] += 1
    return uuid.uuid4().hex


class Echo(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        doubled = await step.do("double", lambda: (event.payload or {}).get("n", 0) * 2)
        return {"doubled": doubled}


class Chain(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        first = await step.do("first", lambda: _fresh("first"))
        second = await step.do("second", lambda: _fresh("second"))
        third = await step.do("third", lambda: _fresh("third"))
        return [first, second, third]


class Approval(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("prepare", lambda: "ready")
        approved = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return {"by": approved.payload["user"]}


class Flaky(WorkflowEntrypoint):
    """Fails its first two attempts, then succeeds: three recorded attempts."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def attempt(ctx: StepContext) -> int:
            if ctx.attempt < 3:
                raise RuntimeError(f"attempt {ctx.attempt} failed")
            return ctx.attempt

        return await step.do(
            "shaky", attempt, retries={"limit": 2, "delay": 10, "backoff": "constant"}
        )


class Secret(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        token = await step.do("token", lambda: "s3cr3t-token", sensitive="output")
        return {"length": len(token)}


def _refund(ctx: RollbackContext) -> str:
    RUNS[f"undo {ctx.step_name}"] += 1
    return f"refunded {ctx.output}"


class Refundable(WorkflowEntrypoint):
    """Charges (undone by a refund on rollback), then waits to ship."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("charge", lambda: 100, rollback=_refund)
        await step.wait_for_event("shipping", type="shipped", timeout="1 hour")
        return "shipped"
