"""The ``Store`` in SQLAlchemy Core: one set of queries; dialect differences live in ``Dialect``.

Each operation is one transaction, written as a synchronous function of a connection and run
by ``Database``, which commits concurrent writes together. This module holds what users do to
instances; ``runtime_sql`` what workers do, ``catalog_sql`` workflows and versions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from stepstone.domain.errors import DuplicateInstanceError
from stepstone.domain.records import Event, Instance, StepRecord
from stepstone.domain.status import InstanceStatus
from stepstone.storage import events_sql, rows
from stepstone.storage.base import (
    KEEP,
    DueSchedule,
    EventDelivery,
    InstanceFilter,
    NewInstance,
    Page,
    StartLease,
)
from stepstone.storage.catalog_sql import CatalogQueries
from stepstone.storage.database import Database
from stepstone.storage.dialect import Dialect, schema_revisions
from stepstone.storage.keys_sql import KeyQueries
from stepstone.storage.prepared import Prepared, Unnested
from stepstone.storage.runs_sql import RunQueries
from stepstone.storage.runtime_sql import RuntimeQueries
from stepstone.storage.tables import events, instance_counts, instances, steps, workflows
from stepstone.storage.tables import schedules as cron_schedules


class SqlStore(RuntimeQueries, RunQueries, CatalogQueries, KeyQueries):
    """A ``Store`` over SQLAlchemy Core, for SQLite and PostgreSQL alike."""

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self._db = db
        self._dialect = dialect
        self._init_runtime()

    @property
    def url(self) -> str:
        return self._db.writer.url.render_as_string(hide_password=True)

    # ---------------------------------------------------------------- lifecycle
    def _insert_instances(self, conn: Connection, values: list[dict[str, Any]]) -> list[Any]:
        """The new rows, in the order of ``values``: on a server in one statement."""
        if len(values) == 1 or self._dialect.in_process:
            return [row for one in values for row in _INSERT_ONE.all(conn, one)]
        found = {(r.workflow_id, r.id): r for r in _INSERT_MANY.all(conn, values)}
        return [found[v["workflow_id"], v["id"]] for v in values]

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
    async def create_instances(
        self,
        new: Sequence[NewInstance],
        now: int,
        *,
        history: Mapping[str, Sequence[StepRecord]] | None = None,
        lease: StartLease | None = None,
    ) -> list[Instance]:
        if not new:
            return []
        started = 0 if lease is None else lease.count
        values = [
            rows.started_instance_row(n, now, lease.owner, lease.expires_at)
            if lease is not None and i < started
            else rows.new_instance_row(n, now)
            for i, n in enumerate(new)
        ]

        def tx(conn: Connection) -> list[Instance]:
            created = [rows.to_instance(r) for r in self._insert_instances(conn, values)]
            step_values = [
                {"instance_pk": i.pk, **rows.step_values(record)}
                for i in created
                for record in (history or {}).get(i.id, ())
            ]
            if step_values:
                conn.execute(insert(steps), step_values)
            if started < len(new):  # work for any worker; the started ones have theirs
                self._dialect.signal(conn, None)
            return created

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
        params = {"workflow_id": workflow_id, "id": instance_id}
        row = await self._db.lookup(lambda conn: _BY_ID.first(conn, params))
        return None if row is None else rows.to_instance(row)

    async def get_instance_by_pk(self, pk: int) -> Instance | None:
        row = await self._db.lookup(lambda conn: _BY_PK.first(conn, {"pk": pk}))
        return None if row is None else rows.to_instance(row)

    async def list_instances(self, workflow_id: str, query: InstanceFilter) -> Page:
        where = [instances.c.workflow_id == workflow_id]
        if query.status is not None:
            where.append(instances.c.status == query.status.value)
        if query.created_from is not None:
            where.append(instances.c.created_at >= query.created_from)
        if query.created_to is not None:
            where.append(instances.c.created_at <= query.created_to)
        if query.created_from is None and query.created_to is None:
            # The kept counts answer at once; counting the rows reads every one of them.
            counted = instance_counts.c.workflow_id == workflow_id
            if query.status is not None:
                counted = and_(counted, instance_counts.c.status == query.status.value)
            total_query = select(func.coalesce(func.sum(instance_counts.c.n), 0)).where(counted)
        else:
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
            values.update(rows.NO_OUTCOME, started_at=None)

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
            if target.is_terminal and row.parent_pk is not None:
                events_sql.announce_end(
                    conn,
                    self._dialect,
                    parent_pk=row.parent_pk,
                    child_id=row.id,
                    status=target.value,
                    output=row.output,
                    error_name=row.error_name,
                    error_message=row.error_message,
                    now=now,
                )
            return rows.to_instance(row)

        return await self._db.write(tx)

    async def add_event(
        self, pk: int, type: str, payload: str, now: int, *, wake: Collection[InstanceStatus]
    ) -> Event:
        statuses = frozenset(s.value for s in wake)
        seq = await self._db.write(
            lambda conn: events_sql.add_event(conn, self._dialect, pk, type, payload, now, statuses)
        )
        return Event(seq=seq, type=type, payload=payload, received_at=now)

    async def deliver_event(
        self,
        tenant: str,
        workflow_name: str,
        instance_id: str,
        type: str,
        payload: str,
        now: int,
        *,
        accept: Collection[InstanceStatus],
        wake: Collection[InstanceStatus],
    ) -> EventDelivery | None:
        accepted = frozenset(s.value for s in accept)
        statuses = frozenset(s.value for s in wake)
        params = {"tenant": tenant, "name": workflow_name, "id": instance_id}

        def tx(conn: Connection) -> EventDelivery | None:
            if not self._dialect.in_process:  # a server: one statement, one round trip
                values = {"b_type": type, "b_payload": payload, "b_now": now}
                values.update(params, **self._dialect.signal_values())
                row = events_sql.delivery(accepted, statuses).first(conn, values)
                return None if row is None else _delivery(row, row.seq, first=row.first)
            row = _EVENT_TARGET.first(conn, params)
            if row is None:
                return None
            if row.status not in accepted:
                return _delivery(row, None, first=False)
            seq = events_sql.add_event(conn, self._dialect, row.pk, type, payload, now, statuses)
            if row.lease_owner is None:  # no run holds it to hand the event to
                return _delivery(row, seq, first=False)
            earlier = events_sql.EARLIER_PENDING.first(
                conn, {"b_pk": row.pk, "b_type": type, "b_seq": seq}
            )
            return _delivery(row, seq, first=earlier is None)

        return await self._db.write(tx, single=not self._dialect.in_process)

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


_BY_ID = Prepared(
    select(instances).where(
        instances.c.workflow_id == bindparam("workflow_id"), instances.c.id == bindparam("id")
    )
)
_BY_PK = Prepared(select(instances).where(instances.c.pk == bindparam("pk")))


def _delivery(row: Any, seq: int | None, *, first: bool) -> EventDelivery:
    return EventDelivery(
        pk=row.pk,
        status=InstanceStatus(row.status),
        held=row.lease_owner is not None,
        added=seq is not None,
        seq=seq,
        first=first and seq is not None and row.lease_owner is not None,
    )


_EVENT_TARGET = Prepared(events_sql.TARGET)
_INSERT_ONE = Prepared(
    insert(instances)
    .values({c: bindparam(c) for c in rows.NEW_INSTANCE_COLUMNS})
    .returning(*instances.c)
)
_INSERT_MANY = Unnested(
    {c: instances.c[c].type for c in rows.NEW_INSTANCE_COLUMNS},
    lambda new: (
        insert(instances)
        .from_select(rows.NEW_INSTANCE_COLUMNS, select(*new.c))
        .returning(*instances.c)
    ),
)
