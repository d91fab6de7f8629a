"""Group commit: concurrent step results share commits, and each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.errors import StoreUnavailableError, ValidationError
from stepstone.domain.records import StepRecord, StepState, StepType
from stepstone.domain.status import RUNNABLE
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage.base import LeaseLostError
from stepstone.storage.batching import Batcher, Outcomes
from stepstone.storage.sql import SqlStore


class Recorder:
    """A batch runner that records its batches; items named 'bad' break a whole batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, items: Sequence[str]) -> Outcomes:
        self.batches.append(list(items))
        await asyncio.sleep(0)  # a commit takes a moment: others queue meanwhile
        if "down" in items:
            raise StoreUnavailableError("the database is unavailable: test")
        if "bad" in items:
            raise ValidationError("bad item")
        return [LeaseLostError() if item == "lost" else None for item in items]


async def test_items_submitted_during_a_commit_share_the_next_one() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder)
    await asyncio.gather(*(batcher.submit(f"s{i}") for i in range(50)))
    assert sum(len(b) for b in recorder.batches) == 50
    assert len(recorder.batches) <= 2  # the first alone, then everything that queued behind it


async def test_each_caller_gets_its_own_outcome() -> None:
    batcher = Batcher(Recorder())
    results = await asyncio.gather(
        batcher.submit("a"), batcher.submit("lost"), batcher.submit("b"), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], LeaseLostError)
    assert results[2] is None


async def test_a_bad_item_fails_alone() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder)
    first = asyncio.ensure_future(batcher.submit("first"))
    results = await asyncio.gather(
        batcher.submit("ok-1"),
        batcher.submit("bad"),
        batcher.submit("ok-2"),
        return_exceptions=True,
    )
    await first
    assert results[0] is None
    assert isinstance(results[1], ValidationError)
    assert results[2] is None


async def test_an_unreachable_database_fails_the_whole_batch() -> None:
    batcher = Batcher(Recorder())
    with pytest.raises(StoreUnavailableError):
        await batcher.submit("down")


class Idle(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
        return None


async def test_a_lost_lease_fails_only_its_own_step(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    await engine.deploy_class(Idle)
    await engine.create_instances("idle", [("keep", None), ("lose", None)])
    claims = {
        c.instance.id: c for c in await store.claim("w", clock.now_ms(), 30_000, 10, RUNNABLE)
    }
    await engine.change_status("idle", "lose", "terminate")

    def record(name: str) -> StepRecord:
        return StepRecord(
            name=name,
            count=1,
            type=StepType.STEP,
            state=StepState.COMPLETE,
            seq=1,
            started_at=0,
            output='"done"',
        )

    results = await asyncio.gather(
        store.save_step(claims["keep"], record("a"), clock.now_ms()),
        store.save_step(claims["lose"], record("a"), clock.now_ms()),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], LeaseLostError)
    assert [s.name for s in await store.load_steps(claims["keep"].instance.pk)] == ["a"]
    assert await store.load_steps(claims["lose"].instance.pk) == []
