"""Runs as the workflow-runs API sees them: a project's runs across its workflows, a run by id,
edits of a run's step records, and the runs waiting for an event key. Mixed into SqlStore."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    literal_column,
    or_,
    select,
    update,
)

from stepstone.domain.records import Instance, StepRecord, StepState
from stepstone.domain.status import TIMED_OUT_ERROR, InstanceStatus
from stepstone.storage import rows
from stepstone.storage.base import Page, RunFilter, WaitingStep
from stepstone.storage.database import Database
from stepstone.storage.dialect import Dialect
from stepstone.storage.prepared import Prepared
from stepstone.storage.tables import events, instances, steps


class RunQueries:
    _db: Database
    _dialect: Dialect

    async def find_instance(self, tenant: str, instance_id: str) -> Instance | None:
        """The tenant's instance ``instance_id``, whatever its workflow (ids of runs the
        server generates are unique; of caller-given ones, the newest wins)."""
        params = {"tenant": tenant, "id": instance_id}
        row = await self._db.lookup(lambda conn: _BY_TENANT_ID.first(conn, params))
        return None if row is None else rows.to_instance(row)

    async def list_runs(self, tenant: str, query: RunFilter) -> Page:
        where: list[Any] = [instances.c.tenant == tenant]
        if query.workflow_id is not None:
            where.append(instances.c.workflow_id == query.workflow_id)
        if query.statuses is not None:
            where.append(instances.c.status.in_(sorted(s.value for s in query.statuses)))
        if query.timed_out is not None:
            timed_out = instances.c.error_name == TIMED_OUT_ERROR
            where.append(
                timed_out if query.timed_out else or_(instances.c.error_name.is_(None), ~timed_out)
            )
        key = (instances.c.created_at, instances.c.pk)
        if query.cursor:
            created_at, pk = rows.decode_cursor(query.cursor)
            where.append(or_(key[0] < created_at, and_(key[0] == created_at, key[1] < pk)))
        page_query = (
            select(instances)
            .where(*where)
            .order_by(key[0].desc(), key[1].desc())
            .offset(query.offset)
            .limit(query.limit + 1)
        )
        found = await self._db.read(
            lambda conn: [rows.to_instance(r) for r in conn.execute(page_query)]
        )
        next_cursor = None
        if len(found) > query.limit:
            found = found[: query.limit]
            next_cursor = rows.encode_cursor(found[-1].created_at, found[-1].pk)
        return Page(found, next_cursor)

    async def edit_steps(
        self,
        pk: int,
        *,
        expected: Collection[InstanceStatus],
        target: InstanceStatus | None,
        now: int,
        put: Sequence[StepRecord] = (),
        remove: Collection[str] = (),
    ) -> Instance | None:
        """Rewrite some of an instance's step records and have a worker replay it from them:
        records ``put`` replace those of their name, records named in ``remove`` (and the
        events they took) go; the instance is taken from any worker (its lease fenced), moved
        from one of ``expected`` to ``target`` (compare-and-set; ``None`` if it was elsewhere;
        a ``target`` of ``None`` keeps its status), and made ready now. A ``target`` that
        reopens an ended instance clears its outcome."""
        values: dict[str, Any] = {
            "modified_at": now,
            "ready_at": None if target is InstanceStatus.PAUSED else now,
            "lease_owner": None,
            "lease_expires_at": None,
            "lease_epoch": instances.c.lease_epoch + 1,
        }
        if target is not None:
            values["status"] = target.value
            if not target.is_terminal and any(s.is_terminal for s in expected):
                values.update(rows.NO_OUTCOME, purge_at=None)
        names = sorted({*remove, *(r.name for r in put)})
        put_values = [{"instance_pk": pk, **rows.step_values(r)} for r in put]

        def tx(conn: Connection) -> Instance | None:
            row = conn.execute(
                update(instances)
                .where(instances.c.pk == pk, instances.c.status.in_([s.value for s in expected]))
                .values(**values)
                .returning(*instances.c)
            ).one_or_none()
            if row is None:
                return None
            if names:
                conn.execute(
                    delete(events).where(
                        events.c.instance_pk == pk, events.c.consumed_by_name.in_(names)
                    )
                )
                conn.execute(
                    delete(steps).where(steps.c.instance_pk == pk, steps.c.name.in_(names))
                )
            if put_values:
                conn.execute(steps.insert(), put_values)
            self._dialect.signal(conn, pk)
            return rows.to_instance(row)

        return await self._db.write(tx)

    async def children_of(self, pk: int) -> list[Instance]:
        """The child runs instance ``pk``'s steps started."""
        found = await self._db.read(lambda conn: _CHILDREN.all(conn, {"pk": pk}))
        return [rows.to_instance(r) for r in found]

    async def waiting_for(self, tenant: str, event_type: str) -> list[WaitingStep]:
        """The tenant's instances with a step waiting for events of ``event_type``."""
        params = {"tenant": tenant, "type": event_type}
        found = await self._db.read(lambda conn: _WAITING.all(conn, params))
        return [WaitingStep(r.pk, r.id, r.name, r.started_at) for r in found]


_BY_TENANT_ID = Prepared(
    select(instances)
    .where(instances.c.tenant == bindparam("tenant"), instances.c.id == bindparam("id"))
    .order_by(instances.c.created_at.desc())
    .limit(1)
)
_CHILDREN = Prepared(
    select(instances).where(instances.c.parent_pk == bindparam("pk")).order_by(instances.c.pk)
)
_WAITING = Prepared(
    select(instances.c.pk, instances.c.id, steps.c.name, steps.c.started_at)
    .join(instances, instances.c.pk == steps.c.instance_pk)
    .where(
        # Literal, so that SQLite sees the query fits ix_steps_waiting_event's condition.
        steps.c.state == literal_column(f"'{StepState.WAITING.value}'"),
        steps.c.event_type == bindparam("type"),
        instances.c.tenant == bindparam("tenant"),
    )
    .order_by(steps.c.started_at)
)
