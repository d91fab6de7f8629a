"""The Stepstone side's workflows. Deployed with ``Engine.deploy_class``, which stores this file
as the script and runs these very class objects in the bench's process.

The module keeps no imports from ``bench`` so that the stored script is self-contained.
"""

from __future__ import annotations

import time
from typing import Any

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

STEPS = 10
"""No-op steps per workflow, the shape of the issue's reference figures."""


async def noop() -> None:
    """Async, as the peer's no-op step is: a sync step function runs in a thread."""
    return None


async def monotonic_ms() -> float:
    """A clock every process on the machine shares (CLOCK_MONOTONIC); async, as the peer's
    is."""
    return time.monotonic() * 1000


class BenchTen(WorkflowEntrypoint):
    """Ten no-op durable steps."""

    name = "bench-ten"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> int:
        for _ in range(STEPS):
            await step.do("noop", noop)
        return STEPS


class BenchEvent(WorkflowEntrypoint):
    """Waits for one event, then runs one step that says when it ran."""

    name = "bench-event"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.wait_for_event("go", type="go", timeout="1 hour")
        return await step.do("after", monotonic_ms)


class BenchSleep(WorkflowEntrypoint):
    """A step, a durable sleep of ``params.ms`` (2 s by default), a step."""

    name = "bench-sleep"

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        ms = int((event.payload or {}).get("ms", 2000))
        before = await step.do("before", monotonic_ms)
        await step.sleep("nap", ms)
        after = await step.do("after", monotonic_ms)
        return {"before": before, "after": after, "ms": ms}
