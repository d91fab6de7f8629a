"""Helpers the runtime tests share: counting step executions, reading an instance back,
waiting with a deadline."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from stepstone.domain.records import Instance, StepRecord
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import Clock
from stepstone.storage.base import Store
from stepstone.worker.worker import Worker, WorkerSettings

CALLS: Counter[str] = Counter()
"""How often each step function ran; cleared before every test (tests/runtime/conftest.py).
Module-level, so the workflow classes the tests deploy can count into it across replays."""


def counted(name: str) -> str:
    """A step function that counts its executions and returns its name."""
    CALLS[name] += 1
    return name


async def instance_of(engine: Engine, workflow: str, instance_id: str) -> Instance:
    return (await engine.get_instance(workflow, instance_id)).instance


async def steps_of(engine: Engine, workflow: str, instance_id: str) -> list[StepRecord]:
    return (await engine.get_instance(workflow, instance_id)).steps


async def step_named(engine: Engine, workflow: str, instance_id: str, name: str) -> StepRecord:
    [record] = [s for s in await steps_of(engine, workflow, instance_id) if s.name == name]
    return record


async def status_of(engine: Engine, workflow: str, instance_id: str) -> InstanceStatus:
    return (await instance_of(engine, workflow, instance_id)).status


def output_of(instance: Instance) -> Any:
    assert instance.output is not None, f"{instance.id} has no output ({instance.status})"
    return json.loads(instance.output)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def within(awaitable: Awaitable[Any], timeout: float = 5.0) -> Any:
    """Await with a deadline, so a broken runtime fails the test instead of hanging it."""
    return await asyncio.wait_for(awaitable, timeout)


@asynccontextmanager
async def looping_worker(
    store: Store, engine: Engine, clock: Clock | None = None, **settings: int
) -> AsyncIterator[Worker]:
    """A worker running its loop beside ``engine`` (on the real clock unless given another),
    from after its first look at the database (so that it takes new instances eagerly) until
    the block ends."""
    worker = Worker(
        store,
        clock=clock,
        loader=engine.loader,
        notifier=engine.notifier,
        settings=WorkerSettings(**settings),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="worker loop")

    async def looked() -> bool:
        return worker.room() > 0

    try:
        await eventually(looked, what="the worker's first look")
        yield worker
    finally:
        stop.set()
        await within(task)
