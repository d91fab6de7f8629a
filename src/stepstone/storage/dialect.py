"""What differs between SQLite and PostgreSQL, kept small: engines, upserts, locks, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any, Protocol

from sqlalchemy import Connection, Select, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

_MIGRATE_LOCK = asyncio.Lock()


class Dialect(Protocol):
    name: str

    def is_unique_violation(self, exc: IntegrityError) -> bool: ...
    def skip_locked(self, query: Select[Any]) -> Select[Any]: ...
    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        *,
        keys: Sequence[str],
        where: ColumnElement[bool],
    ) -> Insert: ...
    async def migrate(self, engine: AsyncEngine) -> None: ...


def run_migrations(connection: Connection) -> None:
    """Bring the schema to the newest Alembic revision on ``connection``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("stepstone.storage") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class SqliteDialect:
    name = "sqlite"

    def __init__(self, synchronous: str = "NORMAL") -> None:
        self.synchronous = synchronous

    def configure(self, engine: AsyncEngine, *, immediate: bool) -> None:
        """WAL, a busy timeout, foreign keys; writers take the lock up front (BEGIN IMMEDIATE).

        Taking the write lock at BEGIN avoids the deadlock of two readers both upgrading to
        writers, which SQLite cannot resolve by waiting.
        """
        synchronous = self.synchronous

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def is_unique_violation(self, exc: IntegrityError) -> bool:
        return "UNIQUE constraint failed" in str(exc.orig)

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        return query  # BEGIN IMMEDIATE already serialises writers.

    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        *,
        keys: Sequence[str],
        where: ColumnElement[bool],
    ) -> Insert:
        stmt = sqlite.insert(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={k: stmt.excluded[k] for k in values if k not in keys},
            where=where,
        )

    async def migrate(self, engine: AsyncEngine) -> None:
        async with _MIGRATE_LOCK, engine.begin() as conn:
            await conn.run_sync(run_migrations)


class PostgresDialect:
    name = "postgresql"

    def is_unique_violation(self, exc: IntegrityError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True)

    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        *,
        keys: Sequence[str],
        where: ColumnElement[bool],
    ) -> Insert:
        stmt = postgresql.insert(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={k: stmt.excluded[k] for k in values if k not in keys},
            where=where,
        )

    async def migrate(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            # One migrator at a time across processes.
            await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7412093)")
            await conn.run_sync(run_migrations)
