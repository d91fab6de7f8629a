"""Stepstone in the bench's process: a store, an engine, and a worker whose instance runs
report when they end.

The engine offers no public way to learn that an instance finished other than reading its
status, so ``TrackingWorker`` wraps ``Worker._start`` (the one place a run task is created) to
time the end of each run without polling the database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bench import flows, records
from bench.databases import RunDatabase
from bench.probes import EndTracker, RssSampler, now_ms, rss_mb, timer_figures
from bench.stats import latency
from stepstone.domain.records import Claim
from stepstone.engine import Engine
from stepstone.engine.engine import Deployed
from stepstone.storage import open_store
from stepstone.storage.base import InstanceFilter, Store
from stepstone.worker.worker import Worker, WorkerSettings

if not hasattr(Worker, "_start"):  # pragma: no cover - a guard for engine refactors
    raise RuntimeError(
        "stepstone.worker.Worker._start is gone: bench/stepstone_side.py needs another way "
        "to learn when an instance's run ends"
    )


class TrackingWorker(Worker):
    """A worker that tells ``tracker`` whenever an instance's run task ends."""

    def __init__(self, store: Store, tracker: EndTracker, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.tracker = tracker

    def _start(self, claim: Claim, hold_ms: int) -> asyncio.Task[None]:
        task = super()._start(claim, hold_ms)
        instance_id = claim.instance.id
        task.add_done_callback(lambda _task: self.tracker.ended(instance_id))
        return task


@dataclass
class Harness:
    engine: Engine
    worker: TrackingWorker | None
    tracker: EndTracker
    deployed: dict[str, Deployed]

    async def statuses(self, workflow: str) -> dict[str, int]:
        deployed = self.deployed[workflow].workflow
        return (await self.engine.instance_counts([deployed]))[deployed.id]

    async def wait_all_complete(self, workflow: str, total: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            counts = await self.statuses(workflow)
            if counts.get("complete", 0) >= total:
                return
            if sum(v for k, v in counts.items() if k in ("errored", "terminated")):
                raise RuntimeError(f"{workflow}: instances did not complete: {counts}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workflow}: not all complete in {timeout_s} s: {counts}")
            await asyncio.sleep(0.1)

    async def outputs(self, workflow: str) -> list[Any]:
        """Every instance's output, page by page."""
        found: list[Any] = []
        cursor = None
        while True:
            page = await self.engine.query_instances(
                workflow, InstanceFilter(limit=1000, cursor=cursor)
            )
            found.extend(json.loads(i.output) for i in page.items if i.output is not None)
            cursor = page.next_cursor
            if cursor is None:
                return found


@asynccontextmanager
async def harness(db: RunDatabase, *, worker: bool = True) -> AsyncIterator[Harness]:
    """Open (and migrate) the store, deploy the bench workflows, run a worker with the default
    settings."""
    store = await open_store(db.stepstone_url)
    engine = Engine(store)
    tracker = EndTracker()
    deployed = {}
    for cls in (flows.BenchTen, flows.BenchEvent, flows.BenchSleep):
        done = await engine.deploy_class(cls)
        deployed[done.workflow.name] = done
    running = None
    stop = asyncio.Event()
    tracking = None
    if worker:
        tracking = TrackingWorker(
            store,
            tracker,
            loader=engine.loader,
            notifier=engine.notifier,
            settings=WorkerSettings(),
        )
        running = asyncio.create_task(tracking.run(stop), name="bench worker")
    try:
        yield Harness(engine, tracking, tracker, deployed)
    finally:
        stop.set()
        if running is not None:
            await running
        await store.close()


async def sequential(h: Harness, n: int) -> dict[str, float]:
    """``n`` workflows of ten steps, each started after the previous one completed."""
    await _one(h, "warm-up")
    samples = []
    start = now_ms()
    for i in range(n):
        samples.append(await _one(h, f"seq-{i}"))
    elapsed_s = (now_ms() - start) / 1000
    await h.wait_all_complete("bench-ten", n + 1, 10)
    return {
        "workflows_per_s": n / elapsed_s,
        "steps_per_s": n * flows.STEPS / elapsed_s,
        **latency("", samples),
    }


async def _one(h: Harness, instance_id: str) -> float:
    end = h.tracker.expect(instance_id)
    start = now_ms()
    await h.engine.create_instances("bench-ten", [(instance_id, None)])
    return await end - start


async def concurrent(h: Harness, m: int) -> dict[str, float]:
    """``m`` workflows of ten steps created in one call; time until the last completes."""
    await _one(h, "warm-up")
    ids = [f"conc-{i}" for i in range(m)]
    ends = [h.tracker.expect(i) for i in ids]
    start = now_ms()
    await h.engine.create_instances("bench-ten", [(i, None) for i in ids])
    last = max(await asyncio.gather(*ends))
    drain_s = (last - start) / 1000
    await h.wait_all_complete("bench-ten", m + 1, 30)
    return {
        "steps_per_s": m * flows.STEPS / drain_s,
        "workflows_per_s": m / drain_s,
        "drain_s": drain_s,
    }


async def timers(
    h: Harness, db: RunDatabase, k: int, sleep_ms: int, timeout_s: float
) -> dict[str, float]:
    """``k`` instances sleeping ``sleep_ms`` at once: how late they wake, how much memory."""
    base = rss_mb()
    sampler = RssSampler()
    sampler.start()
    start = now_ms()
    for first in range(0, k, 1000):
        batch = [(f"sleep-{i}", {"ms": sleep_ms}) for i in range(first, min(k, first + 1000))]
        await h.engine.create_instances("bench-sleep", batch)
    await h.wait_all_complete("bench-sleep", k, timeout_s)
    elapsed_s = (now_ms() - start) / 1000
    await sampler.stop()
    outputs = await h.outputs("bench-sleep")
    from_deadline = await asyncio.to_thread(records.sleep_lateness, db)
    return {
        **timer_figures(outputs, sampler, base, elapsed_s),
        **latency("sleep_late_", from_deadline),
    }
