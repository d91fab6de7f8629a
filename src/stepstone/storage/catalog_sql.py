"""Workflows, versions and scripts: the catalogue of what can run, as SqlStore queries."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update

from stepstone.domain.ids import new_id
from stepstone.domain.records import Job, Script, Version, Workflow
from stepstone.storage import rows
from stepstone.storage.base import NewVersion
from stepstone.storage.database import Database
from stepstone.storage.prepared import Prepared
from stepstone.storage.tables import (
    events,
    instance_counts,
    instances,
    scripts,
    steps,
    versions,
    workflows,
)
from stepstone.storage.tables import (
    jobs as jobs_table,
)
from stepstone.storage.tables import schedules as cron_schedules


class CatalogQueries:
    """Mixed into ``SqlStore``; every method is one transaction on ``self._db``."""

    _db: Database

    async def put_workflow(
        self,
        tenant: str,
        name: str,
        *,
        class_name: str,
        script_name: str,
        schedules: Mapping[str, int],
        now: int,
        settings: Mapping[str, Any] | None = None,
    ) -> Workflow:
        values = {
            "class_name": class_name,
            "script_name": script_name,
            "schedules": json.dumps(list(schedules)),
            "modified_at": now,
        }
        if settings is not None:
            values["settings"] = json.dumps(settings)
            values["concurrency_limit"] = (settings.get("concurrency") or {}).get("limit")
        named = and_(workflows.c.tenant == tenant, workflows.c.name == name)

        def tx(conn: Connection) -> Workflow:
            if conn.execute(update(workflows).where(named).values(**values)).rowcount == 0:
                conn.execute(
                    insert(workflows).values(
                        id=new_id(), tenant=tenant, name=name, created_at=now, **values
                    )
                )
            row = conn.execute(select(workflows).where(named)).one()
            mine = cron_schedules.c.workflow_id == row.id
            conn.execute(
                delete(cron_schedules).where(mine, cron_schedules.c.cron.not_in(schedules))
            )
            existing = set(conn.execute(select(cron_schedules.c.cron).where(mine)).scalars())
            new = [
                {"workflow_id": row.id, "cron": cron, "next_at": first}
                for cron, first in schedules.items()
                if cron not in existing
            ]
            if new:
                conn.execute(insert(cron_schedules), new)
            return rows.to_workflow(row)

        return await self._db.write(tx)

    async def add_version(self, workflow_id: str, version: NewVersion, now: int) -> Version:
        version_id = new_id()

        def tx(conn: Connection) -> Version:
            number = conn.execute(
                select(func.coalesce(func.max(versions.c.number), 0)).where(
                    versions.c.workflow_id == workflow_id
                )
            ).scalar_one()
            conn.execute(
                insert(versions).values(
                    id=version_id,
                    workflow_id=workflow_id,
                    number=number + 1,
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
            conn.execute(
                update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(current_version_id=version_id, modified_at=now)
            )
            return rows.to_version(
                conn.execute(select(versions).where(versions.c.id == version_id)).one()
            )

        return await self._db.write(tx)

    async def get_workflow(self, tenant: str, name: str) -> Workflow | None:
        params = {"tenant": tenant, "name": name}
        row = await self._db.lookup(lambda conn: _WORKFLOW.first(conn, params))
        return None if row is None else rows.to_workflow(row)

    async def get_workflow_by_id(self, workflow_id: str) -> Workflow | None:
        params = {"id": workflow_id}
        row = await self._db.lookup(lambda conn: _WORKFLOW_BY_ID.first(conn, params))
        return None if row is None else rows.to_workflow(row)

    async def list_workflows(
        self, tenant: str, *, search: str | None = None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[Workflow], int]:
        where = [workflows.c.tenant == tenant]
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(workflows.c.name.ilike(f"%{escaped}%", escape="\\"))
        query = select(workflows).where(*where).order_by(workflows.c.name).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        total = select(func.count()).select_from(workflows).where(*where)

        def tx(conn: Connection) -> tuple[list[Workflow], int]:
            found = [rows.to_workflow(r) for r in conn.execute(query)]
            return found, int(conn.execute(total).scalar_one())

        return await self._db.read(tx)

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow with its versions, instances, steps and events (not its script)."""

        def tx(conn: Connection) -> bool:
            pks = select(instances.c.pk).where(instances.c.workflow_id == workflow_id)
            conn.execute(delete(events).where(events.c.instance_pk.in_(pks)))
            conn.execute(delete(steps).where(steps.c.instance_pk.in_(pks)))
            conn.execute(delete(instances).where(instances.c.workflow_id == workflow_id))
            conn.execute(delete(cron_schedules).where(cron_schedules.c.workflow_id == workflow_id))
            conn.execute(delete(versions).where(versions.c.workflow_id == workflow_id))
            return bool(
                conn.execute(delete(workflows).where(workflows.c.id == workflow_id)).rowcount
            )

        return await self._db.write(tx)

    async def set_terminate_job(self, workflow_id: str, job: Mapping[str, Any]) -> None:
        statement = (
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(terminate_job=json.dumps(job))
        )
        await self._db.write(lambda conn: conn.execute(statement))

    async def put_script(
        self, tenant: str, name: str, archive: bytes, source_hash: str, now: int
    ) -> Script:
        named = and_(scripts.c.tenant == tenant, scripts.c.name == name)

        def tx(conn: Connection) -> Script:
            changed = conn.execute(
                update(scripts)
                .where(named)
                .values(archive=archive, source_hash=source_hash, modified_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(scripts).values(
                        tenant=tenant,
                        name=name,
                        archive=archive,
                        source_hash=source_hash,
                        created_at=now,
                        modified_at=now,
                    )
                )
            return rows.to_script(conn.execute(select(scripts).where(named)).one())

        return await self._db.write(tx)

    async def get_script(self, tenant: str, name: str) -> Script | None:
        query = select(scripts).where(scripts.c.tenant == tenant, scripts.c.name == name)
        row = await self._db.read(lambda conn: conn.execute(query).one_or_none())
        return None if row is None else rows.to_script(row)

    async def put_jobs(
        self, tenant: str, script_name: str, jobs: Mapping[str, tuple[str, str]], now: int
    ) -> None:
        mine = and_(jobs_table.c.tenant == tenant, jobs_table.c.script_name == script_name)

        def tx(conn: Connection) -> None:
            conn.execute(delete(jobs_table).where(mine, jobs_table.c.name.not_in(list(jobs))))
            for name, (module, function) in jobs.items():
                named = and_(jobs_table.c.tenant == tenant, jobs_table.c.name == name)
                values = {
                    "script_name": script_name,
                    "module": module,
                    "function": function,
                    "modified_at": now,
                }
                if conn.execute(update(jobs_table).where(named).values(**values)).rowcount == 0:
                    conn.execute(
                        insert(jobs_table).values(
                            tenant=tenant, name=name, created_at=now, **values
                        )
                    )

        await self._db.write(tx)

    async def get_job(self, tenant: str, name: str) -> Job | None:
        params = {"tenant": tenant, "name": name}
        row = await self._db.lookup(lambda conn: _JOB.first(conn, params))
        return None if row is None else rows.to_job(row)

    async def list_jobs(self, tenant: str) -> list[Job]:
        query = select(jobs_table).where(jobs_table.c.tenant == tenant).order_by(jobs_table.c.name)
        found = await self._db.read(lambda conn: conn.execute(query).all())
        return [rows.to_job(r) for r in found]

    async def get_version(self, version_id: str) -> Version | None:
        params = {"id": version_id}
        row = await self._db.lookup(lambda conn: _VERSION.first(conn, params))
        return None if row is None else rows.to_version(row)

    async def list_versions(self, workflow_id: str) -> list[Version]:
        query = (
            select(versions)
            .where(versions.c.workflow_id == workflow_id)
            .order_by(versions.c.number.desc())
        )
        found = await self._db.read(lambda conn: conn.execute(query).all())
        return [rows.to_version(r) for r in found]

    async def count_instances(self, workflow_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        query = (
            select(
                instance_counts.c.workflow_id,
                instance_counts.c.status,
                func.sum(instance_counts.c.n),
            )
            .where(instance_counts.c.workflow_id.in_(list(workflow_ids)))
            .group_by(instance_counts.c.workflow_id, instance_counts.c.status)
        )
        found = await self._db.read(lambda conn: conn.execute(query).all())
        counts: dict[str, dict[str, int]] = {w: {} for w in workflow_ids}
        for workflow_id, status, count in found:
            if count:
                counts[workflow_id][status] = int(count)
        return counts


_WORKFLOW = Prepared(
    select(workflows).where(
        workflows.c.tenant == bindparam("tenant"), workflows.c.name == bindparam("name")
    )
)
_WORKFLOW_BY_ID = Prepared(select(workflows).where(workflows.c.id == bindparam("id")))
_VERSION = Prepared(select(versions).where(versions.c.id == bindparam("id")))
_JOB = Prepared(
    select(jobs_table).where(
        jobs_table.c.tenant == bindparam("tenant"), jobs_table.c.name == bindparam("name")
    )
)
