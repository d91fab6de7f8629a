"""What differs between SQLite and PostgreSQL, kept small: engines, upserts, locks, errors."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Select, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement


class Dialect(Protocol):
    name: str

    def is_unique_violation(self, exc: IntegrityError) -> bool: ...
    def skip_locked(self, query: Select[Any], *, of: Table) -> Select[Any]: ...
    def upsert(self, table: Table, *, keys: Sequence[str], where: ColumnElement[bool]) -> Insert:
        """INSERT of every column (values given at execution), updating all but ``keys`` on
        conflict where ``where`` holds. Built once: the hot path only binds parameters."""
        ...

    def migrate(self, connection: Connection) -> None: ...


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

    def configure(self, engine: Engine, *, writer: bool) -> None:
        """WAL, a busy timeout, foreign keys. Writers take the lock up front (BEGIN IMMEDIATE):
        that avoids the deadlock of two readers both upgrading to writers, which SQLite cannot
        resolve by waiting. Readers run each statement on its own (autocommit), which saves
        two round trips to the driver's thread per read."""
        synchronous = self.synchronous

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        if writer:

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    def is_unique_violation(self, exc: IntegrityError) -> bool:
        return "UNIQUE constraint failed" in str(exc.orig)

    def skip_locked(self, query: Select[Any], *, of: Table) -> Select[Any]:
        return query  # BEGIN IMMEDIATE already serialises writers.

    def upsert(self, table: Table, *, keys: Sequence[str], where: ColumnElement[bool]) -> Insert:
        stmt = sqlite.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys},
            where=where,
        )

    def migrate(self, connection: Connection) -> None:
        run_migrations(connection)


class PostgresDialect:
    name = "postgresql"

    def is_unique_violation(self, exc: IntegrityError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"

    def skip_locked(self, query: Select[Any], *, of: Table) -> Select[Any]:
        return query.with_for_update(skip_locked=True, of=of)

    def upsert(self, table: Table, *, keys: Sequence[str], where: ColumnElement[bool]) -> Insert:
        stmt = postgresql.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys},
            where=where,
        )

    def migrate(self, connection: Connection) -> None:
        # One migrator at a time across processes.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7412093)")
        run_migrations(connection)
