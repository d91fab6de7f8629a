"""The smallest workflow: two steps and a sleep.

stepstone run hello --params '{"name": "Ada"}' --wait
"""

from __future__ import annotations

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class Hello(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        name = await step.do("who", lambda: (event.payload or {}).get("name", "world"))
        await step.sleep("pause", "1 second")
        return await step.do("greet", lambda: f"Hello, {name}!")
