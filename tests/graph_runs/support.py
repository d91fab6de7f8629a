"""Helpers for graph-run tests: a catalog and runs over the test's engine, and jobs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepstone.domain.records import Instance
from stepstone.engine import Engine
from stepstone.engine.graph_catalog import GraphCatalog, GraphWorkflow
from stepstone.engine.runs import Runs
from stepstone.graph.step_runs import StepRunView

TENANT = "local"
JOBS = Path(__file__).parent / "jobs.py"
"""The script the graph-run tests deploy: their ``@job`` functions."""
TIMELINE: list[tuple[str, str]] = []
"""(event, step ref) in the order jobs saw them; cleared before every test."""
PEAK = {"now": 0, "peak": 0}
"""How many ``slow`` jobs ran at once, and the most that did."""
SPANS: list[tuple[str, float, float]] = []
"""(ref, start, end) of every ``slow`` job, by the monotonic clock."""


def graph(slug: str, steps: Sequence[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "project_id": TENANT,
        "name": slug.title(),
        "slug": slug,
        "steps": list(steps),
        **fields,
    }


def job(ref: str, job_id: str = "echo", **fields: Any) -> dict[str, Any]:
    return {"step_ref": ref, "step_type": "job", "job_id": job_id, **fields}


class Graphs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.catalog = GraphCatalog(engine)
        self.runs = Runs(engine, self.catalog)

    async def create(
        self, slug: str, steps: Sequence[dict[str, Any]], **fields: Any
    ) -> GraphWorkflow:
        return await self.catalog.create(TENANT, graph(slug, steps, **fields))

    async def trigger(self, workflow: GraphWorkflow, payload: Any = None, **body: Any) -> Instance:
        return await self.catalog.trigger(
            TENANT, workflow.workflow.id, {"payload": payload, **body}
        )

    async def run(self, run_id: str) -> Instance:
        return (await self.runs.get(TENANT, run_id)).instance

    async def steps(self, run_id: str) -> dict[str, StepRunView]:
        run = await self.runs.get(TENANT, run_id)
        return {v.step_ref: v for v in await self.runs.step_runs(run)}

    async def statuses(self, run_id: str) -> dict[str, str]:
        return {ref: v.status.value for ref, v in (await self.steps(run_id)).items()}


def output(instance: Instance) -> Any:
    assert instance.output is not None, (
        f"{instance.id} ended {instance.status}: {instance.error_message}"
    )
    return json.loads(instance.output)
