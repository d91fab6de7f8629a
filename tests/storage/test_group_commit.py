"""Group commit: writes made at the same time share a transaction, each keeps its own outcome.

Both backends. The SQLite tests also hold the write lock from another connection, to show
that the event loop's own committer never waits for it (the loop keeps running) and that the
writes land once the lock is free.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import IntegrityError

from stepstone import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from stepstone.domain.errors import DuplicateInstanceError, ValidationError
from stepstone.domain.records import Claim, StepRecord, StepState, StepType
from stepstone.domain.status import RUNNABLE, InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage import open_store
from stepstone.storage.base import LeaseLostError
from stepstone.storage.database import THREAD_AT, Database
from stepstone.storage.dialect import PostgresDialect
from stepstone.storage.sql import SqlStore
from tests.storage.support import sleep_record

S = InstanceStatus


class Idle(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> None:
        return None


def _step(name: str, output: str) -> StepRecord:
    return StepRecord(
        name=name,
        count=1,
        type=StepType.STEP,
        state=StepState.COMPLETE,
        seq=1,
        started_at=0,
        output=output,
    )


async def _claims(engine: Engine, store: SqlStore, clock: FakeClock, n: int) -> list[Claim]:
    await engine.deploy_class(Idle)
    await engine.create_instances("idle", [(f"i-{k}", None) for k in range(n)])
    return await store.claim("w1", clock.now_ms(), 30_000, n, RUNNABLE)


async def test_concurrent_step_results_all_commit(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claims = await _claims(engine, store, clock, 50)
    await asyncio.gather(
        *(store.save_steps(c, [_step(f"s{k}", str(k))]) for c in claims for k in range(3))
    )
    for claim in claims:
        found = await store.load_steps(claim.instance.pk)
        assert sorted((r.name, r.output) for r in found) == [("s0", "0"), ("s1", "1"), ("s2", "2")]


async def test_a_lost_lease_fails_only_its_own_write(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    claims = await _claims(engine, store, clock, 10)
    lost = claims[3]
    await engine.change_status("idle", lost.instance.id, "terminate")
    outcomes = await asyncio.gather(
        *(store.save_steps(c, [_step("s", '"ok"')]) for c in claims), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [
        LeaseLostError if c is lost else type(None) for c in claims
    ]
    assert await store.load_steps(lost.instance.pk) == []
    for claim in claims:
        if claim is not lost:
            [record] = await store.load_steps(claim.instance.pk)
            assert record.output == '"ok"'


async def test_a_failing_write_does_not_undo_the_others_in_its_transaction(
    engine: Engine, store: SqlStore
) -> None:
    await engine.deploy_class(Idle)
    await engine.create_instance("idle", instance_id="taken")
    outcomes = await asyncio.gather(
        engine.create_instance("idle", instance_id="a"),
        engine.create_instance("idle", instance_id="taken"),
        engine.create_instance("idle", instance_id="b"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], DuplicateInstanceError)
    assert [o.id for o in (outcomes[0], outcomes[2]) if not isinstance(o, BaseException)] == [
        "a",
        "b",
    ]
    page = await engine.list_instances("idle", limit=10)
    assert sorted(i.id for i in page.items) == ["a", "b", "taken"]


def _hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    """Another connection (as another process would) holding SQLite's write lock."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    release.wait(10)
    conn.execute("COMMIT")
    conn.close()


async def test_a_write_lock_held_elsewhere_never_blocks_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        engine = Engine(store)
        await engine.deploy_class(Idle)
        locked, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, locked, release))
        holder.start()
        await asyncio.to_thread(locked.wait, 10)

        create = asyncio.create_task(engine.create_instance("idle", instance_id="late"))
        # The loop goes on while the write waits for the lock on the committer thread (were
        # the loop itself waiting, these turns would not happen before the lock is released).
        for _ in range(50):
            await asyncio.sleep(0)
        assert not create.done()
        release.set()
        created = await asyncio.wait_for(create, 10)
        await asyncio.to_thread(holder.join, 10)
        assert created.id == "late"
        # Once the thread has drained, writes run on the loop again.
        assert (await engine.create_instance("idle", instance_id="next")).id == "next"
    finally:
        await store.close()


async def test_on_sqlite_a_large_batch_commits_beside_the_loop_and_a_small_one_on_it(
    tmp_path: Path,
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'placed.db'}")
    assert isinstance(store, SqlStore)
    db = store._db
    try:

        def where(conn: Connection) -> str:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS placed (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO placed VALUES (1)")
            return threading.current_thread().name

        loop_thread = threading.current_thread().name
        small = await asyncio.gather(*(db.write(where) for _ in range(THREAD_AT - 1)))
        assert set(small) == {loop_thread}
        large = await asyncio.gather(*(db.write(where) for _ in range(THREAD_AT)))
        assert set(large) == {"stepstone-commit"}
        # Once the thread has drained, small batches run on the loop again.
        assert await db.write(where) == loop_thread
        total = await db.read(
            lambda conn: conn.exec_driver_sql("SELECT count(*) FROM placed").scalar_one()
        )
        assert total == 2 * THREAD_AT
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_deadlock_with_another_transaction_is_retried(postgres_url: str) -> None:
    """PostgreSQL aborts one of two transactions that lock rows in opposite orders: here the
    batch (it waits first, so its deadlock check fires first). The batch is made again, and
    its caller never sees the deadlock."""
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE rows (id int PRIMARY KEY)")
        setup.execute("INSERT INTO rows VALUES (1), (2)")
    engine = create_engine(postgres_url)
    db = Database(engine, engine, PostgresDialect().begin_write, read_threads=1)
    ours_locked, theirs_locked = threading.Event(), threading.Event()
    attempts = 0

    def ours(conn: Connection) -> str:
        nonlocal attempts
        attempts += 1
        conn.exec_driver_sql("SELECT id FROM rows WHERE id = 1 FOR UPDATE")
        if attempts == 1:
            ours_locked.set()
            theirs_locked.wait(10)
        conn.exec_driver_sql("SELECT id FROM rows WHERE id = 2 FOR UPDATE")
        return "committed"

    def theirs() -> None:
        with psycopg.connect(dsn) as conn, psycopg.connect(dsn, autocommit=True) as watch:
            ours_locked.wait(10)
            conn.execute("SELECT id FROM rows WHERE id = 2 FOR UPDATE")
            theirs_locked.set()
            for _ in range(1000):  # until the batch waits for row 2 (this database's only:
                # other tests' lock waits, in parallel runs, must not count)
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND query LIKE '%id = 2 FOR UPDATE%'"
                    " AND pid <> pg_backend_pid()"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.01)
            conn.execute("SELECT id FROM rows WHERE id = 1 FOR UPDATE")
            conn.commit()

    other = threading.Thread(target=theirs)
    other.start()
    try:
        assert await db.write(ours) == "committed"
    finally:
        await asyncio.to_thread(other.join, 10)
        await db.close()
    assert attempts == 2


async def test_a_single_statement_write_leaves_the_next_transaction_atomic(
    postgres_url: str,
) -> None:
    """On a server a lone one-statement write runs in autocommit mode (no BEGIN, no COMMIT);
    the transaction after it is a transaction again: what it wrote before failing is undone."""
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE rows (id int PRIMARY KEY)")
    engine = create_engine(postgres_url)
    db = Database(
        engine, engine, PostgresDialect().begin_write, read_threads=1, single_autocommit=True
    )

    def status(conn: Connection) -> int:
        conn.exec_driver_sql("INSERT INTO rows VALUES (1)")
        raw = conn.connection.dbapi_connection
        assert raw is not None
        return int(raw.info.transaction_status)

    def half_then_fail(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO rows VALUES (2)")
        conn.exec_driver_sql("INSERT INTO rows VALUES (1)")  # a duplicate: the write fails

    try:
        # Autocommit: the statement committed itself, no transaction is open after it.
        assert await db.write(status, single=True) == psycopg.pq.TransactionStatus.IDLE
        with pytest.raises(IntegrityError):
            await db.write(half_then_fail)
    finally:
        await db.close()
    with psycopg.connect(dsn) as check:
        assert check.execute("SELECT id FROM rows ORDER BY id").fetchall() == [(1,)]


async def _all_claimed(
    engine: Engine, store: SqlStore, clock: FakeClock, ids: list[str]
) -> list[Claim]:
    """New instances with these ids, claimed, in the order of ``ids``."""
    await engine.deploy_class(Idle)
    await engine.create_instances("idle", [(i, None) for i in ids])
    claims = await store.claim("w1", clock.now_ms(), 30_000, len(ids), RUNNABLE)
    return sorted(claims, key=lambda c: ids.index(c.instance.id))


async def test_a_batch_of_new_instances_comes_back_in_the_order_it_was_given(
    engine: Engine, store: SqlStore
) -> None:
    """On a server the batch is one statement, whose rows are matched back to the request."""
    await engine.deploy_class(Idle)
    ids = ["c", "a", "d", "b"]
    created = await engine.create_instances("idle", [(i, {"n": i}) for i in ids])
    assert [i.id for i in created] == ids
    assert [i.params for i in created] == [f'{{"n":"{i}"}}' for i in ids]
    assert len({i.pk for i in created}) == len(ids)


async def test_moves_committed_together_each_get_their_own_outcome(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """Moves queued at once share a transaction (on a server, one round trip): one that finds
    its instance elsewhere, or carries a value the database refuses, fails alone."""
    claims = await _all_claimed(engine, store, clock, [f"m-{i}" for i in range(5)])
    nap = sleep_record(5_000)
    refused = "\x00" if not store.url.startswith("sqlite") else None  # PostgreSQL refuses NUL

    async def move(claim: Claim, expected: S, **fields: str | None) -> bool | Exception:
        try:
            return await store.move(
                claim, expected={expected}, target=S.WAITING, now=clock.now_ms(), ready_at=5_000,
                release=True, steps=[nap], **fields,
            )  # fmt: skip
        except ValidationError as exc:
            return exc

    outcomes = list(
        await asyncio.gather(
            move(claims[0], S.RUNNING),  # it is queued: not moved
            move(claims[1], S.QUEUED),
            move(claims[2], S.QUEUED),
        )
    )
    assert outcomes == [False, True, True]
    outcomes += await asyncio.gather(
        move(claims[3], S.QUEUED, error_message=refused), move(claims[4], S.QUEUED)
    )
    assert outcomes[4] is True
    if refused is not None:
        assert isinstance(outcomes[3], ValidationError)
    for claim, outcome in zip(claims, outcomes, strict=True):
        found = await store.get_instance_by_pk(claim.instance.pk)
        assert found is not None
        written = await store.load_steps(claim.instance.pk)
        if outcome is True:
            assert (found.status, found.lease_owner, found.ready_at) == (S.WAITING, None, 5_000)
            assert [r.name for r in written] == ["nap"]
        else:
            assert (found.status, found.lease_owner) == (S.QUEUED, "w1")
            assert written == []


async def test_two_moves_of_one_instance_committed_together_keep_their_order(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """Moves of one shape are one statement on a server; an instance moved twice in a batch
    is moved twice, in order."""
    claims = await _all_claimed(engine, store, clock, ["o-0", "o-1", "o-2"])

    async def move(claim: Claim, expected: S, target: S) -> bool:
        return await store.move(claim, expected={expected}, target=target, now=clock.now_ms())

    assert await move(claims[0], S.QUEUED, S.RUNNING)
    outcomes = await asyncio.gather(
        move(claims[0], S.RUNNING, S.WAITING),
        move(claims[1], S.QUEUED, S.RUNNING),
        move(claims[1], S.RUNNING, S.WAITING),  # the same shape as the first: after the second
        move(claims[2], S.QUEUED, S.RUNNING),
    )
    assert outcomes == [True, True, True, True]
    found = [await store.get_instance_by_pk(c.instance.pk) for c in claims]
    assert [i.status for i in found if i is not None] == [S.WAITING, S.WAITING, S.RUNNING]


async def test_records_of_one_step_committed_together_keep_the_upserts_order(
    engine: Engine, store: SqlStore, clock: FakeClock
) -> None:
    """A move may carry two records of one step (a sleep that began and ended); committed
    beside other moves they are one statement on a server, which must not write a row twice
    and must keep what the writes one after another would: the newer record, unless the older
    one settled the step."""
    claims = await _all_claimed(engine, store, clock, ["r-1", "r-2"])
    nap = sleep_record(5)
    first, second = _step("s", '"first"'), _step("s", '"second"')

    async def move(claim: Claim, carried: list[StepRecord]) -> bool:
        return await store.move(
            claim, expected={S.QUEUED}, target=S.RUNNING, now=clock.now_ms(), steps=carried
        )

    assert await asyncio.gather(
        move(claims[0], [nap, nap.completed_at(5)]), move(claims[1], [first, second])
    ) == [True, True]
    [slept] = await store.load_steps(claims[0].instance.pk)
    assert (slept.state, slept.ended_at) == (StepState.COMPLETE, 5)
    [kept] = await store.load_steps(claims[1].instance.pk)
    assert kept.output == '"first"'
