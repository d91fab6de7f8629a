"""Store guarantees the runtime relies on: fencing, commit-once, no missed wake-ups."""

from __future__ import annotations

import pytest

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.errors import ValidationError
from stepstone.domain.records import Claim, StepRecord, StepState, StepType
from stepstone.domain.status import IN_PROGRESS, RUNNABLE, InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage.base import LeaseLostError
from stepstone.storage.sql import SqlStore
from tests.storage.support import sleep_record

S = InstanceStatus


class Idle(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
        return None


async def _claimed(engine: Engine, store: SqlStore, clock: FakeClock) -> Claim:
    await engine.deploy_class(Idle)
    await engine.create_instance("idle", instance_id="i-1")
    [claim] = await store.claim("w1", clock.now_ms(), 30_000, 10, RUNNABLE)
    return claim


def _step(state: StepState, output: str | None = None) -> StepRecord:
    return StepRecord(
        name="s", count=1, type=StepType.STEP, state=state, seq=1, started_at=0, output=output
    )


async def test_a_claimed_instance_is_not_claimed_twice(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    await _claimed(engine, store, clock)
    assert await store.claim("w2", clock.now_ms(), 30_000, 10, RUNNABLE) == []
    await clock.advance(30_001)
    [taken] = await store.claim("w2", clock.now_ms(), 30_000, 10, RUNNABLE)
    assert taken.owner == "w2"


async def test_writes_under_a_lost_lease_are_refused(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claim = await _claimed(engine, store, clock)
    await engine.change_status("idle", "i-1", "terminate")
    with pytest.raises(LeaseLostError):
        await store.save_steps(claim, [_step(StepState.COMPLETE, "1")])
    assert not await store.move(claim, expected={S.QUEUED}, target=S.RUNNING, now=0)
    assert await store.load_steps(claim.instance.pk) == []


async def test_a_completed_step_is_never_overwritten(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claim = await _claimed(engine, store, clock)
    await store.save_steps(claim, [_step(StepState.COMPLETE, '"first"')])
    await store.save_steps(claim, [_step(StepState.COMPLETE, '"second"')])
    [record] = await store.load_steps(claim.instance.pk)
    assert record.output == '"first"'


async def test_an_event_arriving_before_the_wait_is_recorded_wakes_the_eviction(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claim = await _claimed(engine, store, clock)
    assert await store.move(claim, expected={S.QUEUED}, target=S.RUNNING, now=clock.now_ms())
    # The event lands while the instance still shows `running`: add_event cannot wake it.
    await engine.send_event("idle", "i-1", "approved", {"ok": True})
    deadline = clock.now_ms() + 3_600_000
    assert await store.move(
        claim,
        expected={S.RUNNING},
        target=S.WAITING,
        now=clock.now_ms(),
        ready_at=deadline,
        release=True,
        wake_for={"approved"},
    )
    instance = await store.get_instance_by_pk(claim.instance.pk)
    assert instance is not None
    assert instance.ready_at == clock.now_ms()


async def test_a_delivery_says_whether_its_event_is_the_only_one_of_its_type_pending(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """What lets a run take an event handed over in memory without reading it back."""
    waits = {S.WAITING}
    claim = await _claimed(engine, store, clock)

    async def deliver(type: str) -> tuple[int | None, bool]:
        found = await store.deliver_event(
            "local", "idle", "i-1", type, "null", clock.now_ms(), accept={S.QUEUED}, wake=waits
        )
        assert found is not None
        return found.seq, found.first

    one, first = await deliver("go")
    assert first
    assert (await deliver("go"))[1] is False  # the first one is still pending
    assert (await deliver("other"))[1] is True
    took = StepRecord(
        name="w", count=1, type=StepType.WAIT_FOR_EVENT, state=StepState.COMPLETE, seq=1,
        started_at=0, output="null", event_type="go", event_seq=one,
    )  # fmt: skip
    await store.save_steps(claim, [took])
    assert (await deliver("go"))[1] is False  # the second is pending now
    refused = await store.deliver_event(
        "local", "idle", "i-1", "go", "null", clock.now_ms(), accept={S.PAUSED}, wake=waits
    )
    assert refused is not None
    assert (refused.added, refused.seq, refused.first) == (False, None, False)


async def test_a_move_writes_what_it_carries_only_if_it_is_made(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """A move carries the run's records and the events they took: written and consumed with
    it, or (a move refused, an event consumed already) not at all."""
    claim = await _claimed(engine, store, clock)
    now = clock.now_ms()
    seqs = []
    for _ in range(2):
        sent = await store.deliver_event(
            "local", "idle", "i-1", "go", "null", now, accept={S.QUEUED}, wake={S.WAITING}
        )
        assert sent is not None
        seqs.append(sent.seq)

    def took(name: str, seq: int | None) -> StepRecord:
        return StepRecord(
            name=name, count=1, type=StepType.WAIT_FOR_EVENT, state=StepState.COMPLETE, seq=1,
            started_at=0, output="null", event_type="go", event_seq=seq,
        )  # fmt: skip

    done = StepRecord(
        name="s", count=1, type=StepType.STEP, state=StepState.COMPLETE, seq=2, started_at=0,
        ended_at=0, output="1",
    )  # fmt: skip

    async def move(expected: InstanceStatus, *carried: StepRecord) -> bool:
        return await store.move(
            claim, expected={expected}, target=S.COMPLETE, now=now, release=True, steps=carried
        )

    assert not await move(S.PAUSED, took("a", seqs[0]), done)  # refused: nothing written
    assert await store.load_steps(claim.instance.pk) == []
    first = await store.pending_event(claim.instance.pk, "go")
    assert first is not None
    assert first.seq == seqs[0]

    await store.save_steps(claim, [took("a", seqs[0])])  # another commit takes the first
    with pytest.raises(LeaseLostError):
        await move(S.QUEUED, took("b", seqs[0]), done)
    instance = await store.get_instance_by_pk(claim.instance.pk)
    assert instance is not None
    assert instance.status is S.QUEUED
    assert [r.name for r in await store.load_steps(claim.instance.pk)] == ["a"]

    assert await move(S.QUEUED, took("b", seqs[1]), done)
    assert await store.pending_event(claim.instance.pk, "go") is None
    assert [r.name for r in await store.load_steps(claim.instance.pk)] == ["a", "b", "s"]
    instance = await store.get_instance_by_pk(claim.instance.pk)
    assert instance is not None
    assert instance.status is S.COMPLETE


async def test_an_unrelated_event_does_not_wake_the_eviction(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claim = await _claimed(engine, store, clock)
    await engine.send_event("idle", "i-1", "other", None)
    deadline = clock.now_ms() + 60_000
    assert await store.move(
        claim,
        expected={S.QUEUED},
        target=S.WAITING,
        now=clock.now_ms(),
        ready_at=deadline,
        release=True,
        wake_for={"approved"},
    )
    instance = await store.get_instance_by_pk(claim.instance.pk)
    assert instance is not None
    assert instance.ready_at == deadline


async def test_a_value_the_database_refuses_is_a_validation_error(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    await engine.deploy_class(Idle)
    instance = await engine.create_instance("idle", instance_id="i-nul")
    # SQLite stores a NUL character; PostgreSQL refuses it, as the caller's mistake.
    if store.url.startswith("sqlite"):
        await engine.send_event("idle", instance.id, "type\x00with-nul", None)
    else:
        with pytest.raises(ValidationError, match="cannot be stored"):
            await engine.send_event("idle", instance.id, "type\x00with-nul", None)


async def test_instances_in_progress_are_claimed_before_queued_ones(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """A worker with room for one takes the instance whose timer fired, not a newer arrival
    that was ready earlier: work in progress is never starved by new work."""
    claim = await _claimed(engine, store, clock)
    await engine.create_instance("idle", instance_id="newcomer")
    assert await store.move(
        claim,
        expected={S.QUEUED},
        target=S.WAITING,
        now=clock.now_ms(),
        ready_at=clock.now_ms() + 1_000,
        release=True,
    )
    await clock.advance(1_000)
    [first] = await store.claim("w2", clock.now_ms(), 30_000, 1, RUNNABLE, first=IN_PROGRESS)
    assert first.instance.id == "i-1"
    [second] = await store.claim("w2", clock.now_ms(), 30_000, 1, RUNNABLE, first=IN_PROGRESS)
    assert second.instance.id == "newcomer"
    # Without a preference, the one ready longest goes first.
    assert await store.move(
        first, expected={S.WAITING}, target=S.WAITING, now=clock.now_ms(), release=True
    )
    assert await store.move(
        second, expected={S.QUEUED}, target=S.QUEUED, now=clock.now_ms(), release=True
    )
    [oldest] = await store.claim("w3", clock.now_ms(), 30_000, 1, RUNNABLE)
    assert oldest.instance.id == "newcomer"


async def test_new_instances_are_capped_but_work_in_progress_is_not(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """``new_limit`` bounds the queued (new) instances a claim takes; instances in progress
    whose timer fired are taken whatever the cap."""
    claim = await _claimed(engine, store, clock)
    await engine.create_instances("idle", [(f"new-{k}", None) for k in range(5)])
    assert await store.move(
        claim, expected={S.QUEUED}, target=S.WAITING, now=clock.now_ms(), release=True
    )
    taken = await store.claim(
        "w2", clock.now_ms(), 30_000, 10, RUNNABLE, first=IN_PROGRESS, new_limit=2
    )
    assert [c.instance.id for c in taken] == ["i-1", "new-0", "new-1"]
    none_new = await store.claim(
        "w2", clock.now_ms(), 30_000, 10, RUNNABLE, first=IN_PROGRESS, new_limit=0
    )
    assert none_new == []


async def test_a_timer_about_to_fire_is_claimed_ahead_but_new_work_is_not(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """``ahead_ms`` lets a worker take a waiting instance just before its timer fires (it
    replays meanwhile); a queued instance with a later start is never taken early."""
    claim = await _claimed(engine, store, clock)
    await engine.create_instance("idle", instance_id="later")
    [later] = await store.claim("w1", clock.now_ms(), 30_000, 10, RUNNABLE)
    now = clock.now_ms()
    for taken, target in ((claim, S.WAITING), (later, S.QUEUED)):
        assert await store.move(
            taken, expected={S.QUEUED}, target=target, now=now, ready_at=now + 40, release=True
        )
    assert await store.claim("w2", now, 30_000, 10, RUNNABLE, first=IN_PROGRESS) == []
    [early] = await store.claim("w2", now, 30_000, 10, RUNNABLE, first=IN_PROGRESS, ahead_ms=50)
    assert early.instance.id == "i-1"
    assert await store.claim("w2", now, 30_000, 10, RUNNABLE, first=IN_PROGRESS, ahead_ms=50) == []


async def test_a_claim_reads_the_steps_and_starts_what_it_takes(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claim = await _claimed(engine, store, clock)
    assert claim.steps == ()
    await store.save_steps(claim, [_step(StepState.COMPLETE, "1")])
    assert await store.move(
        claim, expected={S.QUEUED}, target=S.WAITING, now=clock.now_ms(), release=True
    )
    [again] = await store.claim(
        "w2", clock.now_ms(), 30_000, 10, RUNNABLE, start={S.WAITING: S.RUNNING}
    )
    assert again.instance.status is S.RUNNING
    assert again.instance.started_at == clock.now_ms()
    assert again.steps is not None
    assert [(r.name, r.output) for r in again.steps] == [("s", "1")]


@pytest.mark.parametrize("limit", [1, 10], ids=["one", "batch"])
async def test_a_claim_records_the_sleeps_whose_deadline_passed_as_complete(
    engine: Engine, store: SqlStore, clock: FakeClock, limit: int
) -> None:
    """What each replay would write (the sleep complete since its deadline), the claim writes
    for all it takes at once; a sleep still running (an instance claimed ahead of its timer)
    stays waiting."""
    claim = await _claimed(engine, store, clock)
    await engine.create_instance("idle", instance_id="later")
    [later] = await store.claim("w1", clock.now_ms(), 30_000, 10, RUNNABLE)
    now = clock.now_ms()
    for taken, wake_at in ((claim, now + 100), (later, now + 10_000)):
        assert await store.move(
            taken,
            expected={S.QUEUED},
            target=S.WAITING,
            now=now,
            ready_at=wake_at,
            release=True,
            steps=[sleep_record(wake_at)],
        )
    await clock.advance(100)
    again = await store.claim(
        "w2", clock.now_ms(), 30_000, limit, RUNNABLE, first=IN_PROGRESS, ahead_ms=20_000
    )

    found = {c.instance.id: c.steps for c in again}
    assert found["i-1"] == (sleep_record(now + 100).completed_at(now + 100),)
    assert await store.load_steps(claim.instance.pk) == list(found["i-1"] or ())
    if limit > 1:
        assert found["later"] == (sleep_record(now + 10_000),)
    assert await store.load_steps(later.instance.pk) == [sleep_record(now + 10_000)]
