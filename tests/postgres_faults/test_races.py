"""Races on one PostgreSQL database: several stores (connection pools) act as separate processes.

Claims, event takes and cron ticks are decided in the database (``FOR UPDATE SKIP LOCKED``, the
lease fence, compare-and-set), so each of these races has exactly one winner however they
interleave. (An event is read by the wait that takes it and consumed by the commit of the wait's
completed record: the commit decides.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.records import Claim, Event, StepRecord, StepState, StepType
from stepstone.domain.status import RUNNABLE
from stepstone.engine import Engine
from stepstone.engine.schedules import fire_due
from stepstone.runtime.clock import FakeClock
from stepstone.runtime.signals import Notifier
from stepstone.storage import open_store
from stepstone.storage.base import LeaseLostError
from stepstone.storage.sql import SqlStore
from tests.postgres import fresh_database

pytestmark = pytest.mark.postgres

T0 = int(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC).timestamp() * 1000)
MINUTE = 60_000
STORES = 8


class Quick(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("one", lambda: 1)


class Approval(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        got = await step.wait_for_event("approval", type="go", timeout="1 hour")
        return got.payload


class EveryFive(WorkflowEntrypoint):
    schedules = ("*/5 * * * *",)

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("tick", lambda: "tock")


@pytest.fixture
async def stores(postgres_template: str) -> AsyncIterator[list[SqlStore]]:
    """Several stores on one fresh database, each with its own connection pool."""
    async for url in fresh_database(postgres_template):
        opened = [await open_store(url, migrate=False) for _ in range(STORES)]
        try:
            yield opened
        finally:
            for store in opened:
                await store.close()


async def _claim_all(store: SqlStore, owner: str, now: int) -> list[Claim]:
    """Claim small batches until nothing ready is left."""
    claimed: list[Claim] = []
    while batch := await store.claim(owner, now, 60_000, 7, RUNNABLE):
        claimed.extend(batch)
    return claimed


async def test_racing_workers_claim_each_instance_once(stores: list[SqlStore]) -> None:
    clock = FakeClock(T0)
    engine = Engine(stores[0], clock=clock)
    await engine.deploy_class(Quick)
    created = await engine.create_instances("quick", [(None, None)] * 500)
    owners = [f"owner-{n}" for n in range(16)]

    results = await asyncio.gather(
        *(_claim_all(stores[n % len(stores)], owner, T0) for n, owner in enumerate(owners))
    )

    claimed = Counter(c.instance.pk for claims in results for c in claims)
    assert set(claimed) == {i.pk for i in created}
    assert set(claimed.values()) == {1}, "an instance was claimed by two owners"
    assert sum(1 for claims in results if claims) >= 2, "the claims did not overlap at all"
    # The database agrees on every winner.
    for owner, claims in zip(owners, results, strict=True):
        for claim in claims:
            stored = await stores[0].get_instance_by_pk(claim.instance.pk)
            assert stored is not None
            assert (stored.lease_owner, stored.lease_epoch) == (owner, claim.epoch)


def _approval_record() -> StepRecord:
    """The step record ``wait_for_event("approval", type="go")`` takes its event into."""
    return StepRecord(
        name="approval",
        count=1,
        type=StepType.WAIT_FOR_EVENT,
        state=StepState.WAITING,
        seq=0,
        started_at=T0,
        event_type="go",
    )


async def _take(
    store: SqlStore, claim: Claim, now: int, wait: StepRecord | None = None
) -> Event | None:
    """What a run's wait does: read the earliest pending event, then commit the completed wait,
    which consumes the event (refused if the claim is stale or the event was taken)."""
    wait = wait or _approval_record()
    assert wait.event_type is not None
    event = await store.pending_event(claim.instance.pk, wait.event_type)
    if event is None:
        return None
    output = {"type": event.type, "payload": json.loads(event.payload), "timestamp": now}
    done = replace(
        wait,
        state=StepState.COMPLETE,
        ended_at=now,
        output=json.dumps(output),
        event_seq=event.seq,
    )
    try:
        await store.save_steps(claim, [done])
    except LeaseLostError:
        return None
    return event


async def _take_over_and_take(store: SqlStore, pks: set[int], now: int) -> dict[int, Event | None]:
    """A second worker claims the expired instances (retrying the ones a racing transaction
    holds locked) and takes each one's event."""
    claims: dict[int, Claim] = {}
    deadline = time.monotonic() + 10
    while claims.keys() != pks:
        assert time.monotonic() < deadline, "the second worker could not claim the instances"
        claims.update(
            {c.instance.pk: c for c in await store.claim("second", now, 60_000, 100, RUNNABLE)}
        )
    return {pk: await _take(store, claim, now) for pk, claim in claims.items()}


async def test_a_buffered_event_is_taken_once_across_a_lease_takeover(
    stores: list[SqlStore],
) -> None:
    clock = FakeClock(T0)
    engine = Engine(stores[0], clock=clock)
    await engine.deploy_class(Approval)
    created = await engine.create_instances("approval", [(None, None)] * 40)
    for instance in created:
        await engine.send_event("approval", instance.id, "go", {"for": instance.id})
    first = await stores[0].claim("first", T0, 1_000, 100, RUNNABLE)
    assert {c.instance.pk for c in first} == {i.pk for i in created}

    # The first worker's leases have run out: while it takes its events, a second worker
    # takes the instances over and takes the same events.
    later = T0 + 2_000
    takeover = asyncio.create_task(_take_over_and_take(stores[4], {i.pk for i in created}, later))
    by_first = await asyncio.gather(
        *(_take(stores[1 + n % 3], claim, later) for n, claim in enumerate(first))
    )
    by_second = await takeover

    for claim, first_got in zip(first, by_first, strict=True):
        second_got = by_second[claim.instance.pk]
        assert (first_got is None) != (second_got is None), (
            f"instance {claim.instance.pk}: first took {first_got}, second took {second_got}"
        )
        steps = await stores[0].load_steps(claim.instance.pk)
        assert [(s.name, s.state) for s in steps] == [("approval", StepState.COMPLETE)]
    # Each event is consumed by exactly one step.
    for instance in created:
        view = await engine.get_instance("approval", instance.id)
        [step] = view.steps
        assert step.output is not None
        assert instance.id in step.output


async def test_two_waits_for_one_buffered_event_take_it_once(stores: list[SqlStore]) -> None:
    clock = FakeClock(T0)
    engine = Engine(stores[0], clock=clock)
    await engine.deploy_class(Approval)
    created = await engine.create_instances("approval", [(None, None)] * 40)
    for instance in created:
        await engine.send_event("approval", instance.id, "go", {"for": instance.id})
    claims = await stores[0].claim("only", T0, 60_000, 100, RUNNABLE)
    assert len(claims) == len(created)

    def wait(name: str) -> StepRecord:
        return StepRecord(
            name=name,
            count=1,
            type=StepType.WAIT_FOR_EVENT,
            state=StepState.WAITING,
            seq=0 if name == "left" else 1,
            started_at=T0,
            event_type="go",
        )

    # Two parallel waits for the same event type in each instance, through different pools.
    outcomes = await asyncio.gather(
        *(
            _take(stores[(n + side) % len(stores)], claim, T0, wait(name))
            for n, claim in enumerate(claims)
            for side, name in enumerate(("left", "right"))
        )
    )
    for n, claim in enumerate(claims):
        left, right = outcomes[2 * n], outcomes[2 * n + 1]
        assert (left is None) != (right is None), f"instance {claim.instance.pk}: {left} {right}"
        complete = [
            s.name
            for s in await stores[0].load_steps(claim.instance.pk)
            if s.state is StepState.COMPLETE
        ]
        assert complete == ["left" if left is not None else "right"]


async def test_one_cron_tick_seen_by_eight_stores_starts_one_instance(
    stores: list[SqlStore],
) -> None:
    clock = FakeClock(T0)
    engine = Engine(stores[0], clock=clock)
    deployed = await engine.deploy_class(EveryFive)
    ticks = 6
    for tick in range(1, ticks + 1):
        await clock.set(T0 - 30_000 + tick * 5 * MINUTE)
        started = await asyncio.gather(*(fire_due(s, clock, Notifier()) for s in stores))
        assert sorted(started) == [0] * (len(stores) - 1) + [1], f"tick {tick}: {started}"

    items = (await engine.list_instances(deployed.workflow.name, limit=100)).items
    assert sorted(i.schedule["scheduledTime"] for i in items if i.schedule) == [
        T0 - 30_000 + tick * 5 * MINUTE for tick in range(1, ticks + 1)
    ]
