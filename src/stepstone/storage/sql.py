"""The ``Store`` in SQLAlchemy Core: one set of queries; dialect differences live in ``Dialect``."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepstone.domain.errors import DuplicateInstanceError, ValidationError
from stepstone.domain.ids import new_id
from stepstone.domain.records import (
    Attempt,
    Claim,
    Event,
    Instance,
    StepRecord,
    StepState,
    StepType,
    TriggerSource,
    Version,
    Workflow,
)
from stepstone.domain.status import InstanceStatus
from stepstone.storage.base import (
    KEEP,
    DueSchedule,
    LeaseLostError,
    NewInstance,
    NewVersion,
    OwnedInstance,
    Page,
)
from stepstone.storage.dialect import Dialect
from stepstone.storage.tables import events, instances, steps, versions, workflows
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
    }
)


class SqlStore:
    """A ``Store`` over an async SQLAlchemy engine pair: one for writes, one for reads."""

    def __init__(self, writer: AsyncEngine, reader: AsyncEngine, dialect: Dialect) -> None:
        self._writer = writer
        self._reader = reader
        self._dialect = dialect

    @property
    def url(self) -> str:
        return self._writer.url.render_as_string(hide_password=True)

    # ---------------------------------------------------------------- lifecycle
    async def migrate(self) -> None:
        await self._dialect.migrate(self._writer)

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    async def ping(self) -> None:
        async with self._reader.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    # ---------------------------------------------------------------- workflows
    async def put_workflow(
        self,
        tenant: str,
        name: str,
        *,
        class_name: str,
        script_name: str,
        schedules: Mapping[str, int],
        now: int,
    ) -> Workflow:
        values = {
            "class_name": class_name,
            "script_name": script_name,
            "schedules": json.dumps(list(schedules)),
            "modified_at": now,
        }
        async with self._write() as conn:
            result = await conn.execute(
                update(workflows)
                .where(workflows.c.tenant == tenant, workflows.c.name == name)
                .values(**values)
            )
            if result.rowcount == 0:
                await conn.execute(
                    insert(workflows).values(
                        id=new_id(), tenant=tenant, name=name, created_at=now, **values
                    )
                )
            row = (
                await conn.execute(
                    select(workflows).where(workflows.c.tenant == tenant, workflows.c.name == name)
                )
            ).one()
            await conn.execute(
                delete(cron_schedules).where(
                    cron_schedules.c.workflow_id == row.id,
                    cron_schedules.c.cron.not_in(list(schedules)),
                )
            )
            existing = set(
                (
                    await conn.execute(
                        select(cron_schedules.c.cron).where(cron_schedules.c.workflow_id == row.id)
                    )
                ).scalars()
            )
            new = [
                {"workflow_id": row.id, "cron": cron, "next_at": first}
                for cron, first in schedules.items()
                if cron not in existing
            ]
            if new:
                await conn.execute(insert(cron_schedules), new)
        return _workflow(row)

    async def add_version(self, workflow_id: str, version: NewVersion, now: int) -> Version:
        version_id = new_id()
        async with self._write() as conn:
            number = (
                await conn.execute(
                    select(func.coalesce(func.max(versions.c.number), 0)).where(
                        versions.c.workflow_id == workflow_id
                    )
                )
            ).scalar_one() + 1
            await conn.execute(
                insert(versions).values(
                    id=version_id,
                    workflow_id=workflow_id,
                    number=number,
                    class_name=version.class_name,
                    script_name=version.script_name,
                    language=version.language,
                    archive=version.archive,
                    module=version.module,
                    source_hash=version.source_hash,
                    max_steps=version.max_steps,
                    created_at=now,
                )
            )
            await conn.execute(
                update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(current_version_id=version_id, modified_at=now)
            )
            row = (await conn.execute(select(versions).where(versions.c.id == version_id))).one()
        return _version(row)

    async def get_workflow(self, tenant: str, name: str) -> Workflow | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(workflows).where(workflows.c.tenant == tenant, workflows.c.name == name)
                )
            ).one_or_none()
        return None if row is None else _workflow(row)

    async def get_workflow_by_id(self, workflow_id: str) -> Workflow | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(workflows).where(workflows.c.id == workflow_id))
            ).one_or_none()
        return None if row is None else _workflow(row)

    async def list_workflows(self, tenant: str) -> list[Workflow]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(workflows).where(workflows.c.tenant == tenant).order_by(workflows.c.name)
            )
            return [_workflow(r) for r in rows]

    async def get_version(self, version_id: str) -> Version | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(versions).where(versions.c.id == version_id))
            ).one_or_none()
        return None if row is None else _version(row)

    async def list_versions(self, workflow_id: str) -> list[Version]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(versions)
                .where(versions.c.workflow_id == workflow_id)
                .order_by(versions.c.number.desc())
            )
            return [_version(r) for r in rows]

    async def count_instances(self, workflow_id: str) -> dict[str, int]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(instances.c.status, func.count())
                .where(instances.c.workflow_id == workflow_id)
                .group_by(instances.c.status)
            )
            return {status: count for status, count in rows}

    # ---------------------------------------------------------------- instances (users)
    async def create_instances(self, new: Sequence[NewInstance], now: int) -> list[Instance]:
        if not new:
            return []
        rows = [_new_instance_row(n, now) for n in new]
        try:
            async with self._write() as conn:
                result = await conn.execute(insert(instances).returning(*instances.c), rows)
                created = [_instance(r) for r in result]
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
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(instances).where(
                        instances.c.workflow_id == workflow_id, instances.c.id == instance_id
                    )
                )
            ).one_or_none()
        return None if row is None else _instance(row)

    async def get_instance_by_pk(self, pk: int) -> Instance | None:
        async with self._read() as conn:
            row = (await conn.execute(select(instances).where(instances.c.pk == pk))).one_or_none()
        return None if row is None else _instance(row)

    async def list_instances(
        self,
        workflow_id: str,
        *,
        status: InstanceStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        query = select(instances).where(instances.c.workflow_id == workflow_id)
        if status is not None:
            query = query.where(instances.c.status == status.value)
        if cursor:
            created_at, pk = _decode_cursor(cursor)
            query = query.where(
                or_(
                    instances.c.created_at < created_at,
                    and_(instances.c.created_at == created_at, instances.c.pk < pk),
                )
            )
        query = query.order_by(instances.c.created_at.desc(), instances.c.pk.desc()).limit(
            limit + 1
        )
        async with self._read() as conn:
            items = [_instance(r) for r in await conn.execute(query)]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = _encode_cursor(items[-1].created_at, items[-1].pk)
        return Page(items, next_cursor)

    async def change_status(
        self,
        pk: int,
        *,
        expected: InstanceStatus,
        target: InstanceStatus,
        now: int,
        fence: bool,
        ready_at: int | None = KEEP,
        clear_history: bool = False,
    ) -> Instance | None:
        values: dict[str, Any] = {"status": target.value, "modified_at": now}
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
        if clear_history:
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
        async with self._write() as conn:
            result = await conn.execute(
                update(instances)
                .where(instances.c.pk == pk, instances.c.status == expected.value)
                .values(**values)
                .returning(*instances.c)
            )
            row = result.one_or_none()
            if row is None:
                return None
            if clear_history:
                await conn.execute(delete(steps).where(steps.c.instance_pk == pk))
                await conn.execute(
                    delete(events).where(
                        events.c.instance_pk == pk, events.c.consumed_by_name.is_not(None)
                    )
                )
        return _instance(row)

    async def add_event(
        self, pk: int, type: str, payload: str, now: int, *, wake: Collection[InstanceStatus]
    ) -> Event:
        async with self._write() as conn:
            seq = (
                await conn.execute(
                    insert(events)
                    .values(instance_pk=pk, type=type, payload=payload, received_at=now)
                    .returning(events.c.seq)
                )
            ).scalar_one()
            await conn.execute(
                update(instances)
                .where(
                    instances.c.pk == pk,
                    instances.c.status.in_([s.value for s in wake]),
                    or_(instances.c.ready_at.is_(None), instances.c.ready_at > now),
                )
                .values(ready_at=now)
            )
        return Event(seq=seq, type=type, payload=payload, received_at=now)

    async def load_steps(self, pk: int) -> list[StepRecord]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(steps).where(steps.c.instance_pk == pk).order_by(steps.c.seq)
            )
            return [_step(r) for r in rows]

    # ---------------------------------------------------------------- instances (workers)
    async def claim(
        self,
        owner: str,
        now: int,
        lease_ms: int,
        limit: int,
        runnable: Collection[InstanceStatus],
    ) -> list[Claim]:
        candidates = (
            select(instances.c.pk)
            .where(
                instances.c.ready_at <= now,
                or_(instances.c.lease_expires_at.is_(None), instances.c.lease_expires_at < now),
                instances.c.status.in_([s.value for s in runnable]),
            )
            .order_by(instances.c.ready_at)
            .limit(limit)
        )
        candidates = self._dialect.skip_locked(candidates)
        async with self._write() as conn:
            pks = list((await conn.execute(candidates)).scalars())
            if not pks:
                return []
            rows = await conn.execute(
                update(instances)
                .where(instances.c.pk.in_(pks))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + lease_ms,
                    lease_epoch=instances.c.lease_epoch + 1,
                )
                .returning(*instances.c)
            )
            claimed = [_instance(r) for r in rows]
        claimed.sort(key=lambda i: (i.ready_at or 0, i.pk))
        return [Claim(instance=i, owner=owner, epoch=i.lease_epoch) for i in claimed]

    async def renew(self, owner: str, now: int, lease_ms: int) -> list[OwnedInstance]:
        async with self._write() as conn:
            rows = await conn.execute(
                update(instances)
                .where(instances.c.lease_owner == owner)
                .values(lease_expires_at=now + lease_ms)
                .returning(
                    instances.c.pk,
                    instances.c.status,
                    instances.c.lease_epoch,
                    instances.c.ready_at,
                )
            )
            return [
                OwnedInstance(r.pk, InstanceStatus(r.status), r.lease_epoch, r.ready_at)
                for r in rows
            ]

    async def release_all(self, owner: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(instances)
                .where(instances.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def next_wakeup(self, now: int, *, schedules: bool = True) -> int | None:
        async with self._read() as conn:
            timers = [
                (
                    await conn.execute(
                        select(func.min(instances.c.ready_at)).where(instances.c.ready_at > now)
                    )
                ).scalar_one_or_none(),
            ]
            if schedules:
                timers.append(
                    (
                        await conn.execute(select(func.min(cron_schedules.c.next_at)))
                    ).scalar_one_or_none()
                )
        values = [int(v) for v in timers if v is not None]
        return min(values) if values else None

    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        async with self._read() as conn:
            rows = await conn.execute(
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
            return [DueSchedule(*r) for r in rows]

    async def fire_schedule(
        self, due: DueSchedule, next_at: int, instance: NewInstance, now: int
    ) -> Instance | None:
        async with self._write() as conn:
            moved = await conn.execute(
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
            await conn.execute(
                update(workflows).where(workflows.c.id == due.workflow_id).values(triggered_at=now)
            )
            row = (
                await conn.execute(
                    insert(instances)
                    .values(**_new_instance_row(instance, now))
                    .returning(*instances.c)
                )
            ).one()
        return _instance(row)

    async def _fence(self, conn: AsyncConnection, claim: Claim, now: int) -> None:
        result = await conn.execute(
            update(instances)
            .where(
                instances.c.pk == claim.instance.pk,
                instances.c.lease_owner == claim.owner,
                instances.c.lease_epoch == claim.epoch,
            )
            .values(modified_at=now)
        )
        if result.rowcount != 1:
            raise LeaseLostError(claim.instance.pk)

    async def save_step(self, claim: Claim, record: StepRecord, now: int) -> None:
        async with self._write() as conn:
            await self._fence(conn, claim, now)
            await self._upsert_step(conn, claim.instance.pk, record)

    async def _upsert_step(self, conn: AsyncConnection, pk: int, record: StepRecord) -> None:
        values = _step_values(record)
        stmt = self._dialect.upsert(
            steps,
            {"instance_pk": pk, **values},
            keys=("instance_pk", "name", "count"),
            # A completed step is never overwritten: its result is committed exactly once.
            where=steps.c.state != StepState.COMPLETE.value,
        )
        await conn.execute(stmt)

    async def take_event(
        self, claim: Claim, record: StepRecord, now: int
    ) -> tuple[Event, StepRecord] | None:
        pk = claim.instance.pk
        async with self._write() as conn:
            await self._fence(conn, claim, now)
            row = (
                await conn.execute(
                    select(events)
                    .where(
                        events.c.instance_pk == pk,
                        events.c.type == record.event_type,
                        events.c.consumed_by_name.is_(None),
                    )
                    .order_by(events.c.seq)
                    .limit(1)
                )
            ).one_or_none()
            if row is None:
                return None
            taken = await conn.execute(
                update(events)
                .where(events.c.seq == row.seq, events.c.consumed_by_name.is_(None))
                .values(consumed_by_name=record.name, consumed_by_count=record.count)
            )
            if taken.rowcount != 1:
                return None
            event = Event(row.seq, row.type, row.payload, row.received_at)
            done = replace(
                record,
                state=StepState.COMPLETE,
                ended_at=now,
                output=json.dumps(
                    {
                        "type": event.type,
                        "payload": json.loads(event.payload),
                        "timestamp": event.received_at,
                    }
                ),
            )
            await self._upsert_step(conn, pk, done)
        return event, done

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
        async with self._write() as conn:
            result = await conn.execute(
                update(instances)
                .where(
                    instances.c.pk == claim.instance.pk,
                    instances.c.lease_owner == claim.owner,
                    instances.c.lease_epoch == claim.epoch,
                    instances.c.status.in_([s.value for s in expected]),
                )
                .values(**values)
            )
            if result.rowcount == 1 and wake_for:
                # An event that arrived while the instance still looked busy must not wait for
                # the deadline: in this same transaction, wake the instance if one is pending.
                await conn.execute(
                    update(instances)
                    .where(
                        instances.c.pk == claim.instance.pk,
                        select(events.c.seq)
                        .where(
                            events.c.instance_pk == claim.instance.pk,
                            events.c.type.in_(list(wake_for)),
                            events.c.consumed_by_name.is_(None),
                        )
                        .exists(),
                    )
                    .values(ready_at=now)
                )
        return bool(result.rowcount == 1)


# -------------------------------------------------------------------- row mapping
def _new_instance_row(n: NewInstance, now: int) -> dict[str, Any]:
    return {
        "id": n.id,
        "workflow_id": n.workflow_id,
        "version_id": n.version_id,
        "tenant": n.tenant,
        "status": InstanceStatus.QUEUED.value,
        "params": n.params,
        "trigger_source": n.trigger_source.value,
        "schedule": None if n.schedule is None else json.dumps(n.schedule),
        "created_at": now,
        "modified_at": now,
        "ready_at": now,
        "lease_epoch": 0,
    }


def _workflow(row: Row[Any]) -> Workflow:
    return Workflow(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        class_name=row.class_name,
        script_name=row.script_name,
        current_version_id=row.current_version_id,
        schedules=tuple(json.loads(row.schedules or "[]")),
        created_at=row.created_at,
        modified_at=row.modified_at,
        triggered_at=row.triggered_at,
    )


def _version(row: Row[Any]) -> Version:
    return Version(
        id=row.id,
        workflow_id=row.workflow_id,
        number=row.number,
        class_name=row.class_name,
        script_name=row.script_name,
        language=row.language,
        archive=bytes(row.archive),
        module=row.module,
        source_hash=row.source_hash,
        max_steps=row.max_steps,
        created_at=row.created_at,
    )


def _instance(row: Row[Any]) -> Instance:
    return Instance(
        pk=row.pk,
        id=row.id,
        workflow_id=row.workflow_id,
        version_id=row.version_id,
        tenant=row.tenant,
        status=InstanceStatus(row.status),
        params=row.params,
        trigger_source=TriggerSource(row.trigger_source),
        created_at=row.created_at,
        modified_at=row.modified_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        output=row.output,
        error_name=row.error_name,
        error_message=row.error_message,
        ready_at=row.ready_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        lease_epoch=row.lease_epoch,
        rollback_outcome=row.rollback_outcome,
        rollback_error_name=row.rollback_error_name,
        rollback_error_message=row.rollback_error_message,
        schedule=None if row.schedule is None else json.loads(row.schedule),
    )


def _step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        name=row.name,
        count=row._mapping["count"],
        type=StepType(row.type),
        state=StepState(row.state),
        seq=row.seq,
        started_at=row.started_at,
        ended_at=row.ended_at,
        wake_at=row.wake_at,
        config=None if row.config is None else json.loads(row.config),
        attempts=tuple(Attempt.from_json(a) for a in json.loads(row.attempts or "[]")),
        output=row.output,
        error_name=row.error_name,
        error_message=row.error_message,
        event_type=row.event_type,
    )


def _step_values(record: StepRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "count": record.count,
        "type": record.type.value,
        "state": record.state.value,
        "seq": record.seq,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "wake_at": record.wake_at,
        "config": None if record.config is None else json.dumps(record.config),
        "attempts": json.dumps([a.to_json() for a in record.attempts]),
        "output": record.output,
        "error_name": record.error_name,
        "error_message": record.error_message,
        "event_type": record.event_type,
    }


def _encode_cursor(created_at: int, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at}:{pk}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, pk = base64.urlsafe_b64decode(padded).decode().split(":")
        return int(created_at), int(pk)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"cursor {cursor!r} is not one this server issued") from None
