"""The ``Store`` in SQLAlchemy Core: one set of queries; dialect differences live in ``Dialect``.

Each operation is one transaction, written as a synchronous function of a connection and run
by ``Database`` on a database thread (one hop from the event loop per transaction).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from stepstone.domain.errors import DuplicateInstanceError, ValidationError
from stepstone.domain.records import (
    Claim,
    Event,
    Instance,
    StepRecord,
    StepState,
)
from stepstone.domain.status import InstanceStatus
from stepstone.storage import rows
from stepstone.storage.base import (
    KEEP,
    DueSchedule,
    InstanceFilter,
    LeaseLostError,
    NewInstance,
    OwnedInstance,
    Page,
)
from stepstone.storage.catalog_sql import CatalogQueries
from stepstone.storage.database import Database
from stepstone.storage.dialect import Dialect, schema_revisions
from stepstone.storage.keys_sql import KeyQueries
from stepstone.storage.tables import events, instances, steps, workflows
from stepstone.storage.tables import schedules as cron_schedules

_INSTANCE_FIELDS = frozenset(
    {
        "output",
        "error_name",
        "error_message",
        "started_at",
        "ended_at",
        "rollback_outcome",
        "rollback_error_name",
        "rollback_error_message",
        "purge_at",
    }
)


class SqlStore(CatalogQueries, KeyQueries):
    """A ``Store`` over SQLAlchemy Core, for SQLite and PostgreSQL alike."""

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self._db = db
        self._dialect = dialect
        self._upsert_step_statement = dialect.upsert(
            steps,
            keys=("instance_pk", "name", "count"),
            # A completed step is never overwritten: its result is committed exactly once.
            where=steps.c.state != StepState.COMPLETE.value,
        )

    @property
    def url(self) -> str:
        return self._db.writer.url.render_as_string(hide_password=True)

    # ---------------------------------------------------------------- lifecycle
    async def migrate(self) -> None:
        await self._db.write(self._dialect.migrate)

    async def close(self) -> None:
        await self._db.close()

    def listen(self, on_signal: Callable[[int | None], None]) -> Callable[[], None]:
        """Call ``on_signal(pk or None)`` when another process signals work; returns a stop."""
        return self._dialect.listen(self._db.writer, on_signal)

    async def revisions(self) -> tuple[str | None, str]:
        """The schema revision of the database, and the newest this code knows."""
        return await self._db.read(schema_revisions)

    async def ping(self) -> None:
        await self._db.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar_one())

    # ---------------------------------------------------------------- instances (users)
    async def create_instances(self, new: Sequence[NewInstance], now: int) -> list[Instance]:
        if not new:
            return []
        values = [rows.new_instance_row(n, now) for n in new]

        def tx(conn: Connection) -> list[Instance]:
            result = conn.execute(insert(instances).returning(*instances.c), values)
            self._dialect.signal(conn, None)
            return [rows.to_instance(r) for r in result]

        try:
            created = await self._db.write(tx)
        except IntegrityError as exc:
            if self._dialect.is_unique_violation(exc):
                raise DuplicateInstanceError(
                    "an instance with this id already exists for this workflow"
                    if len(new) == 1
                    else "an instance id in the batch already exists for this workflow"
                ) from None
            raise
        by_id = {i.id: i for i in created}
        return [by_id[n.id] for n in new]

    async def get_instance(self, workflow_id: str, instance_id: str) -> Instance | None:
        query = select(instances).where(
            instances.c.workflow_id == workflow_id, instances.c.id == instance_id
        )
        row = await self._db.read(lambda conn: conn.execute(query).one_or_none())
        return None if row is None else rows.to_instance(row)

    async def get_instance_by_pk(self, pk: int) -> Instance | None:
        query = select(instances).where(instances.c.pk == pk)
        row = await self._db.read(lambda conn: conn.execute(query).one_or_none())
        return None if row is None else rows.to_instance(row)

    async def list_instances(self, workflow_id: str, query: InstanceFilter) -> Page:
        where = [instances.c.workflow_id == workflow_id]
        if query.status is not None:
            where.append(instances.c.status == query.status.value)
        if query.created_from is not None:
            where.append(instances.c.created_at >= query.created_from)
        if query.created_to is not None:
            where.append(instances.c.created_at <= query.created_to)
        total_query = select(func.count()).select_from(instances).where(*where)
        key = (instances.c.created_at, instances.c.pk)
        if query.cursor:
            created_at, pk = rows.decode_cursor(query.cursor)
            after = (
                or_(key[0] < created_at, and_(key[0] == created_at, key[1] < pk))
                if query.newest_first
                else or_(key[0] > created_at, and_(key[0] == created_at, key[1] > pk))
            )
            where.append(after)
        order = [k.desc() for k in key] if query.newest_first else list(key)
        page_query = (
            select(instances)
            .where(*where)
            .order_by(*order)
            .offset(query.offset)
            .limit(query.limit + 1)
        )

        def tx(conn: Connection) -> tuple[list[Instance], int | None]:
            found = [rows.to_instance(r) for r in conn.execute(page_query)]
            total = int(conn.execute(total_query).scalar_one()) if query.count else None
            return found, total

        items, total = await self._db.read(tx)
        next_cursor = None
        if len(items) > query.limit:
            items = items[: query.limit]
            next_cursor = rows.encode_cursor(items[-1].created_at, items[-1].pk)
        return Page(items, next_cursor, total)

    async def change_status(
        self,
        pk: int,
        *,
        expected: InstanceStatus,
        target: InstanceStatus,
        now: int,
        fence: bool,
        ready_at: int | None = KEEP,
        clear_from_seq: int | None = None,
        purge_at: int | None = None,
        terminating: bool = False,
    ) -> Instance | None:
        values: dict[str, Any] = {
            "status": target.value,
            "modified_at": now,
            "purge_at": purge_at,
            "terminating": terminating,
        }
        if fence:
            values.update(
                lease_owner=None,
                lease_expires_at=None,
                lease_epoch=instances.c.lease_epoch + 1,
            )
        if ready_at is not KEEP:
            values["ready_at"] = ready_at
        if target.is_terminal:
            values["ended_at"] = now
        if clear_from_seq is not None:
            values.update(
                started_at=None,
                ended_at=None,
                output=None,
                error_name=None,
                error_message=None,
                rollback_outcome=None,
                rollback_error_name=None,
                rollback_error_message=None,
            )

        def tx(conn: Connection) -> Instance | None:
            row = conn.execute(
                update(instances)
                .where(instances.c.pk == pk, instances.c.status == expected.value)
                .values(**values)
                .returning(*instances.c)
            ).one_or_none()
            if row is None:
                return None
            if clear_from_seq is not None:
                # Steps from ``clear_from_seq`` on run again; so do the events they took.
                cleared = and_(steps.c.instance_pk == pk, steps.c.seq >= clear_from_seq)
                taken = [
                    and_(events.c.consumed_by_name == name, events.c.consumed_by_count == count)
                    for name, count in conn.execute(
                        select(steps.c.name, steps.c.count).where(cleared)
                    )
                ]
                if taken:
                    conn.execute(delete(events).where(events.c.instance_pk == pk, or_(*taken)))
                conn.execute(delete(steps).where(cleared))
            self._dialect.signal(conn, pk)
            return rows.to_instance(row)

        return await self._db.write(tx)

    async def add_event(
        self, pk: int, type: str, payload: str, now: int, *, wake: Collection[InstanceStatus]
    ) -> Event:
        def tx(conn: Connection) -> int:
            seq = conn.execute(
                insert(events)
                .values(instance_pk=pk, type=type, payload=payload, received_at=now)
                .returning(events.c.seq)
            ).scalar_one()
            conn.execute(
                update(instances)
                .where(
                    instances.c.pk == pk,
                    instances.c.status.in_([s.value for s in wake]),
                    or_(instances.c.ready_at.is_(None), instances.c.ready_at > now),
                )
                .values(ready_at=now)
            )
            self._dialect.signal(conn, pk)
            return int(seq)

        seq = await self._db.write(tx)
        return Event(seq=seq, type=type, payload=payload, received_at=now)

    async def load_steps(self, pk: int) -> list[StepRecord]:
        query = select(steps).where(steps.c.instance_pk == pk).order_by(steps.c.seq)
        found = await self._db.read(lambda conn: conn.execute(query).all())
        return [rows.to_step(r) for r in found]

    # ---------------------------------------------------------------- instances (workers)
    async def claim(
        self,
        owner: str,
        now: int,
        lease_ms: int,
        limit: int,
        runnable: Collection[InstanceStatus],
    ) -> list[Claim]:
        running = instances.alias("running")
        busy = (
            select(func.count())
            .where(
                running.c.workflow_id == instances.c.workflow_id, running.c.lease_expires_at >= now
            )
            .scalar_subquery()
        )
        candidates = self._dialect.skip_locked(
            select(instances.c.pk, instances.c.workflow_id, workflows.c.concurrency_limit)
            .join(workflows, workflows.c.id == instances.c.workflow_id)
            .where(
                instances.c.ready_at <= now,
                or_(instances.c.lease_expires_at.is_(None), instances.c.lease_expires_at < now),
                instances.c.status.in_([s.value for s in runnable]),
                # A workflow at its concurrency limit waits; others are not held up by it.
                or_(workflows.c.concurrency_limit.is_(None), workflows.c.concurrency_limit > busy),
            )
            .order_by(instances.c.ready_at)
            .limit(limit),
            of=instances,
        )

        def tx(conn: Connection) -> list[Instance]:
            found = conn.execute(candidates).all()
            room = _room(conn, found, now)
            pks = []
            for row in found:
                if row.workflow_id in room:
                    if room[row.workflow_id] <= 0:
                        continue
                    room[row.workflow_id] -= 1
                pks.append(row.pk)
            if not pks:
                return []
            result = conn.execute(
                update(instances)
                .where(instances.c.pk.in_(pks))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + lease_ms,
                    lease_epoch=instances.c.lease_epoch + 1,
                )
                .returning(*instances.c)
            )
            return [rows.to_instance(r) for r in result]

        claimed = await self._db.write(tx)
        claimed.sort(key=lambda i: (i.ready_at or 0, i.pk))
        return [Claim(instance=i, owner=owner, epoch=i.lease_epoch) for i in claimed]

    async def renew(
        self, owner: str, now: int, lease_ms: int, *, pks: Collection[int]
    ) -> list[OwnedInstance]:
        if not pks:
            return []
        statement = (
            update(instances)
            .where(instances.c.lease_owner == owner, instances.c.pk.in_(list(pks)))
            .values(lease_expires_at=now + lease_ms)
            .returning(*_OWNED)
        )
        found = await self._db.write(lambda conn: conn.execute(statement).all())
        return [_owned(r) for r in found]

    async def purge(self, now: int, limit: int) -> int:
        def tx(conn: Connection) -> int:
            pks = list(
                conn.execute(
                    select(instances.c.pk)
                    .where(instances.c.purge_at <= now)
                    .order_by(instances.c.purge_at)
                    .limit(limit)
                ).scalars()
            )
            if pks:
                conn.execute(delete(events).where(events.c.instance_pk.in_(pks)))
                conn.execute(delete(steps).where(steps.c.instance_pk.in_(pks)))
                conn.execute(delete(instances).where(instances.c.pk.in_(pks)))
            return len(pks)

        return await self._db.write(tx)

    async def owned(self, owner: str) -> list[OwnedInstance]:
        query = select(*_OWNED).where(instances.c.lease_owner == owner)
        found = await self._db.read(lambda conn: conn.execute(query).all())
        return [_owned(r) for r in found]

    async def release(self, claims: Sequence[Claim]) -> None:
        statement = (
            update(instances)
            .where(
                instances.c.pk == bindparam("claim_pk"),
                instances.c.lease_owner == bindparam("claim_owner"),
                instances.c.lease_epoch == bindparam("claim_epoch"),
            )
            .values(lease_owner=None, lease_expires_at=None)
        )
        params = [
            {"claim_pk": c.instance.pk, "claim_owner": c.owner, "claim_epoch": c.epoch}
            for c in claims
        ]
        if params:
            await self._db.write(lambda conn: conn.execute(statement, params))

    async def release_all(self, owner: str) -> None:
        statement = (
            update(instances)
            .where(instances.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
        await self._db.write(lambda conn: conn.execute(statement))

    async def next_wakeup(self, now: int, *, schedules: bool = True) -> int | None:
        def tx(conn: Connection) -> list[Any]:
            timers = [
                conn.execute(
                    select(func.min(instances.c.ready_at)).where(instances.c.ready_at > now)
                ).scalar_one_or_none()
            ]
            if schedules:
                timers.append(
                    conn.execute(select(func.min(cron_schedules.c.next_at))).scalar_one_or_none()
                )
            return timers

        values = [int(v) for v in await self._db.read(tx) if v is not None]
        return min(values) if values else None

    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        query = (
            select(
                cron_schedules.c.workflow_id,
                cron_schedules.c.cron,
                cron_schedules.c.next_at,
                workflows.c.current_version_id,
                workflows.c.tenant,
            )
            .join(workflows, workflows.c.id == cron_schedules.c.workflow_id)
            .where(cron_schedules.c.next_at <= now)
            .order_by(cron_schedules.c.next_at)
            .limit(limit)
        )
        found = await self._db.read(lambda conn: conn.execute(query).all())
        return [DueSchedule(*r) for r in found]

    async def fire_schedule(
        self, due: DueSchedule, next_at: int, instance: NewInstance, now: int
    ) -> Instance | None:
        def tx(conn: Connection) -> Instance | None:
            moved = conn.execute(
                update(cron_schedules)
                .where(
                    cron_schedules.c.workflow_id == due.workflow_id,
                    cron_schedules.c.cron == due.cron,
                    cron_schedules.c.next_at == due.next_at,
                )
                .values(next_at=next_at)
            )
            if moved.rowcount != 1:
                return None  # another worker fired this tick
            conn.execute(
                update(workflows).where(workflows.c.id == due.workflow_id).values(triggered_at=now)
            )
            row = conn.execute(
                insert(instances)
                .values(**rows.new_instance_row(instance, now))
                .returning(*instances.c)
            ).one()
            self._dialect.signal(conn, None)
            return rows.to_instance(row)

        return await self._db.write(tx)

    async def save_step(self, claim: Claim, record: StepRecord, now: int) -> None:
        def tx(conn: Connection) -> None:
            _fence(conn, claim, now)
            self._upsert_step(conn, claim.instance.pk, record)

        await self._db.write(tx)

    def _upsert_step(self, conn: Connection, pk: int, record: StepRecord) -> None:
        conn.execute(self._upsert_step_statement, {"instance_pk": pk, **rows.step_values(record)})

    async def take_event(
        self, claim: Claim, record: StepRecord, now: int
    ) -> tuple[Event, StepRecord] | None:
        pk = claim.instance.pk

        def tx(conn: Connection) -> tuple[Event, StepRecord] | None:
            _fence(conn, claim, now)
            row = conn.execute(
                select(events)
                .where(
                    events.c.instance_pk == pk,
                    events.c.type == record.event_type,
                    events.c.consumed_by_name.is_(None),
                )
                .order_by(events.c.seq)
                .limit(1)
            ).one_or_none()
            if row is None:
                return None
            taken = conn.execute(
                update(events)
                .where(events.c.seq == row.seq, events.c.consumed_by_name.is_(None))
                .values(consumed_by_name=record.name, consumed_by_count=record.count)
            )
            if taken.rowcount != 1:
                return None
            event = Event(row.seq, row.type, row.payload, row.received_at)
            output = {
                "type": event.type,
                "payload": json.loads(event.payload),
                "timestamp": event.received_at,
            }
            done = replace(
                record, state=StepState.COMPLETE, ended_at=now, output=json.dumps(output)
            )
            self._upsert_step(conn, pk, done)
            return event, done

        return await self._db.write(tx)

    async def move(
        self,
        claim: Claim,
        *,
        expected: Collection[InstanceStatus],
        target: InstanceStatus,
        now: int,
        ready_at: int | None = KEEP,
        release: bool = False,
        wake_for: Collection[str] = (),
        **fields: Any,
    ) -> bool:
        unknown = set(fields) - _INSTANCE_FIELDS
        if unknown:
            raise ValidationError(f"unknown instance fields: {sorted(unknown)}")
        values: dict[str, Any] = {"status": target.value, "modified_at": now, **fields}
        if ready_at is not KEEP:
            values["ready_at"] = ready_at
        if release:
            values.update(lease_owner=None, lease_expires_at=None)
        pk = claim.instance.pk

        def tx(conn: Connection) -> bool:
            moved = conn.execute(
                update(instances)
                .where(
                    instances.c.pk == pk,
                    instances.c.lease_owner == claim.owner,
                    instances.c.lease_epoch == claim.epoch,
                    instances.c.status.in_([s.value for s in expected]),
                )
                .values(**values)
            ).rowcount
            if moved == 1 and wake_for:
                # An event that arrived while the instance still looked busy must not wait for
                # the deadline: in this same transaction, wake the instance if one is pending.
                pending = (
                    select(events.c.seq)
                    .where(
                        events.c.instance_pk == pk,
                        events.c.type.in_(list(wake_for)),
                        events.c.consumed_by_name.is_(None),
                    )
                    .exists()
                )
                conn.execute(
                    update(instances).where(instances.c.pk == pk, pending).values(ready_at=now)
                )
            if moved == 1 and release:
                self._dialect.signal(conn, None)  # a new timer, or work for any worker
            return bool(moved == 1)

        return await self._db.write(tx)


def _room(conn: Connection, found: Sequence[Row[Any]], now: int) -> dict[str, int]:
    """How many more instances each concurrency-limited workflow among ``found`` may run."""
    limits = {r.workflow_id: r.concurrency_limit for r in found if r.concurrency_limit is not None}
    if not limits:
        return {}
    busy: dict[str, int] = dict(
        conn.execute(
            select(instances.c.workflow_id, func.count())
            .where(instances.c.workflow_id.in_(limits), instances.c.lease_expires_at >= now)
            .group_by(instances.c.workflow_id)
        ).all()
    )
    return {w: limit - busy.get(w, 0) for w, limit in limits.items()}


_OWNED = (instances.c.pk, instances.c.status, instances.c.lease_epoch, instances.c.ready_at)


def _owned(row: Row[Any, Any, Any, Any]) -> OwnedInstance:
    return OwnedInstance(row.pk, InstanceStatus(row.status), row.lease_epoch, row.ready_at)


_FENCE = (
    update(instances)
    .where(
        instances.c.pk == bindparam("fence_pk"),
        instances.c.lease_owner == bindparam("fence_owner"),
        instances.c.lease_epoch == bindparam("fence_epoch"),
    )
    .values(modified_at=bindparam("fence_now"))
)


def _fence(conn: Connection, claim: Claim, now: int) -> None:
    """Refuse the transaction unless ``claim`` still owns its instance."""
    result = conn.execute(
        _FENCE,
        {
            "fence_pk": claim.instance.pk,
            "fence_owner": claim.owner,
            "fence_epoch": claim.epoch,
            "fence_now": now,
        },
    )
    if result.rowcount != 1:
        raise LeaseLostError(claim.instance.pk)
