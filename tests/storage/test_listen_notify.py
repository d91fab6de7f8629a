"""On PostgreSQL, work created by another process wakes a worker through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.storage import open_store
from stepstone.worker.worker import Worker, WorkerSettings

pytestmark = pytest.mark.postgres


class Waits(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        got = await step.wait_for_event("go", type="go", timeout="1 hour")
        return str(got.payload)


async def _until(engine: Engine, instance_id: str, status: InstanceStatus, limit: float) -> float:
    started = time.monotonic()
    while (await engine.get_instance("waits", instance_id)).instance.status is not status:
        if time.monotonic() - started > limit:
            raise AssertionError(f"{instance_id} did not become {status.value} in {limit} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_another_process_wakes_the_worker_without_polling(postgres_url: str) -> None:
    worker_store = await open_store(postgres_url)
    client_store = await open_store(postgres_url, migrate=False)
    try:
        # The worker looks at the database once a minute: only a notification wakes it sooner.
        worker_engine = Engine(worker_store)
        worker = Worker(
            worker_store,
            loader=worker_engine.loader,
            settings=WorkerSettings(
                poll_ms=60_000, hold_ms=60_000, heartbeat_ms=60_000, lease_ms=120_000
            ),
        )
        client = Engine(client_store)  # its own Notifier: nothing in-process reaches the worker
        await client.deploy_class(Waits)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await asyncio.sleep(0)  # let the worker reach its first idle wait
            instance = await client.create_instance("waits", params=None)
            await _until(client, instance.id, InstanceStatus.WAITING, limit=3)
            await client.send_event("waits", instance.id, "go", "now")
            await _until(client, instance.id, InstanceStatus.COMPLETE, limit=3)
        finally:
            stop.set()
            await running
        view = await client.get_instance("waits", instance.id)
        assert view.instance.output == '"now"'
    finally:
        await worker_store.close()
        await client_store.close()


class Naps(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> str:
        await step.sleep("nap", "1 hour")
        return "rested"


async def test_an_instance_leaving_a_worker_tells_the_other_processes(postgres_url: str) -> None:
    """Its lease is free and its timer is new: any worker may have to look again."""
    listening = await open_store(postgres_url)
    running = await open_store(postgres_url, migrate=False)
    heard: list[int | None] = []
    loop = asyncio.get_running_loop()
    got_one = asyncio.Event()

    def on_signal(pk: int | None) -> None:  # on the listener's thread
        loop.call_soon_threadsafe(lambda: (heard.append(pk), got_one.set()))

    stop_listening = listening.listen(on_signal)
    try:
        await asyncio.wait_for(got_one.wait(), 5)  # the listener's first look: it listens
        engine = Engine(running)
        await engine.deploy_class(Naps)
        got_one.clear()
        instance = await engine.create_instance("naps", params=None)
        await asyncio.wait_for(got_one.wait(), 5)  # new work: heard
        got_one.clear()
        heard.clear()
        worker = Worker(running, loader=engine.loader, settings=WorkerSettings(hold_ms=0))
        await worker.run_until_idle(advance=False)  # runs to the sleep, then leaves
        view = await engine.get_instance("naps", instance.id)
        assert view.instance.status is InstanceStatus.WAITING
        assert view.instance.lease_owner is None
        await asyncio.wait_for(got_one.wait(), 5)
        assert heard == [None]  # "look again", not about one instance
    finally:
        stop_listening()
        await listening.close()
        await running.close()
