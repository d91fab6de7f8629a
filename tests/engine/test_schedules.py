"""Cron schedules: one instance per tick, exact next times, one catch-up after downtime."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import TriggerSource
from stepstone.engine import Engine
from stepstone.engine.schedules import fire_due, latest_fire, next_fire
from stepstone.runtime.clock import FakeClock
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker

T0 = int(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC).timestamp() * 1000)
MINUTE = 60_000


class Every5(WorkflowEntrypoint):
    schedules = ("*/5 * * * *",)

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("tick", lambda: "tock")


def test_next_and_latest_fire_are_exact() -> None:
    assert next_fire("*/5 * * * *", T0) == T0 - 30_000 + 5 * MINUTE
    assert latest_fire("*/5 * * * *", T0) == T0 - 30_000
    assert latest_fire("*/5 * * * *", T0 - 30_000) == T0 - 30_000


async def test_each_tick_starts_one_cron_instance(store: SqlStore) -> None:
    clock = FakeClock(T0)
    engine = Engine(store, clock=clock)
    worker = Worker(store, clock=clock, loader=engine.loader, notifier=engine.notifier)
    await engine.deploy_class(Every5)
    await worker.run_until_idle(advance=False)
    assert (await engine.list_instances("every5")).items == []

    await clock.set(T0 - 30_000 + 5 * MINUTE)
    await worker.run_until_idle(advance=False)
    await clock.set(T0 - 30_000 + 10 * MINUTE + 1)
    await worker.run_until_idle(advance=False)

    items = (await engine.list_instances("every5")).items
    assert len(items) == 2
    assert {i.trigger_source for i in items} == {TriggerSource.CRON}
    assert sorted(i.schedule["scheduledTime"] for i in items if i.schedule) == [
        T0 - 30_000 + 5 * MINUTE,
        T0 - 30_000 + 10 * MINUTE,
    ]
    assert all(i.status.value == "complete" for i in items)


async def test_downtime_fires_one_catch_up_not_a_storm(store: SqlStore) -> None:
    clock = FakeClock(T0)
    engine = Engine(store, clock=clock)
    await engine.deploy_class(Every5)
    await clock.set(T0 + 3 * 60 * MINUTE)  # three hours of missed ticks
    assert await fire_due(store, clock, engine.notifier) == 1
    assert await fire_due(store, clock, engine.notifier) == 0
    [instance] = (await engine.list_instances("every5")).items
    assert instance.schedule == {
        "cron": "*/5 * * * *",
        "scheduledTime": latest_fire("*/5 * * * *", clock.now_ms()),
    }


async def test_racing_workers_start_a_tick_once(store: SqlStore) -> None:
    clock = FakeClock(T0)
    engine = Engine(store, clock=clock)
    await engine.deploy_class(Every5)
    await clock.set(T0 + 5 * MINUTE)
    started = await asyncio.gather(*(fire_due(store, clock, engine.notifier) for _ in range(8)))
    assert sum(started) == 1
    assert len((await engine.list_instances("every5")).items) == 1
