"""What differs between SQLite and PostgreSQL, kept small: engines, upserts, locks, errors."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, Select, Table, event, inspect, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql

from stepstone.storage.prepared import Prepared

log = logging.getLogger(__name__)


class Dialect(Protocol):
    name: str
    in_process: bool
    """The database runs inside this process (SQLite): a statement per key costs microseconds,
    where a list to expand costs more; a server pays a round trip per statement."""

    def is_unique_violation(self, exc: IntegrityError) -> bool: ...
    def skip_locked(self, query: Select[Any], *, of: Table) -> Select[Any]: ...
    def upsert(
        self,
        table: Table,
        *,
        keys: Sequence[str],
        where: ColumnElement[bool],
        source: Select[Any] | None = None,
    ) -> Insert:
        """INSERT of every column (values given at execution, or the row ``source`` selects,
        in the table's column order), updating all but ``keys`` on conflict where ``where``
        holds. Built once: the hot path only binds parameters."""
        ...

    def migrate(self, connection: Connection) -> None: ...
    def begin_write(self, connection: Connection) -> None:
        """Start the write transaction SQLAlchemy has begun on ``connection``, if the database
        needs more than the driver's implicit one."""
        ...

    def signal(self, connection: Connection, pk: int | None) -> None:
        """Tell other processes, when this transaction commits, that work may be ready."""
        ...

    def signal_values(self) -> dict[str, str]:
        """What a statement that signals by itself binds: ``pg_notify(:channel, :origin || pk)``
        (``events_sql.delivery``, a move that releases its instance); empty where ``signal``
        does nothing."""
        ...

    def listen(
        self, engine: Engine, on_signal: Callable[[int | None], None]
    ) -> Callable[[], None]: ...


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("stepstone.storage") / "migrations"))
    config.attributes["connection"] = connection
    return config


SCHEMA_REVISION = "0005"
"""The newest migration (a test keeps it equal to Alembic's head): a database already there
needs no migration, so a process starts without loading Alembic at all (about 8 MB)."""


def run_migrations(connection: Connection) -> None:
    """Bring the schema to the newest Alembic revision on ``connection``."""
    if _stored_revision(connection) == SCHEMA_REVISION:
        return
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def _stored_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def schema_revisions(connection: Connection) -> tuple[str | None, str]:
    """(the database's revision, the newest this code knows)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()
    return current, str(head)


def _upsert(
    stmt: sqlite.Insert | postgresql.Insert,
    table: Table,
    keys: Sequence[str],
    where: ColumnElement[bool],
    source: Select[Any] | None,
) -> Insert:
    """Both dialects spell ON CONFLICT DO UPDATE alike; only the insert construct differs."""
    if source is not None:
        stmt = stmt.from_select([c.name for c in table.c], source)
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys},
        where=where,
    )


class SqliteDialect:
    name = "sqlite"
    in_process = True

    def __init__(self, synchronous: str = "NORMAL") -> None:
        self.synchronous = synchronous

    def configure(self, engine: Engine) -> None:
        """WAL, a busy timeout, foreign keys. The driver is left in autocommit mode: readers
        run each statement on its own, and writers open their transactions themselves
        (``begin_write``)."""
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

    def begin_write(self, connection: Connection) -> None:
        """Take the write lock up front (BEGIN IMMEDIATE): that avoids the deadlock of two
        readers both upgrading to writers, which SQLite cannot resolve by waiting."""
        _BEGIN_IMMEDIATE.run(connection)

    def is_unique_violation(self, exc: IntegrityError) -> bool:
        return "UNIQUE constraint failed" in str(exc.orig)

    def signal(self, connection: Connection, pk: int | None) -> None:
        return None  # one machine: the in-process Notifier and a short poll do the job

    def signal_values(self) -> dict[str, str]:
        return {}

    def listen(self, engine: Engine, on_signal: Callable[[int | None], None]) -> Callable[[], None]:
        return lambda: None

    def skip_locked(self, query: Select[Any], *, of: Table) -> Select[Any]:
        return query  # BEGIN IMMEDIATE already serialises writers.

    def upsert(
        self,
        table: Table,
        *,
        keys: Sequence[str],
        where: ColumnElement[bool],
        source: Select[Any] | None = None,
    ) -> Insert:
        return _upsert(sqlite.insert(table), table, keys, where, source)

    def migrate(self, connection: Connection) -> None:
        run_migrations(connection)


class PostgresDialect:
    name = "postgresql"
    in_process = False

    def begin_write(self, connection: Connection) -> None:
        return None  # psycopg opens the transaction with the first statement

    def is_unique_violation(self, exc: IntegrityError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"

    def __init__(self) -> None:
        self.origin = uuid.uuid4().hex[:12]
        """Names this process in its own notifications: it has told itself already."""

    def signal(self, connection: Connection, pk: int | None) -> None:
        payload = f"{self.origin}:{'' if pk is None else pk}"
        _NOTIFY.run(connection, {"channel": CHANNEL, "payload": payload})

    def signal_values(self) -> dict[str, str]:
        return {"channel": CHANNEL, "origin": f"{self.origin}:"}

    def listen(self, engine: Engine, on_signal: Callable[[int | None], None]) -> Callable[[], None]:
        listener = _Listener(engine, on_signal, self.origin)
        listener.start()
        return listener.stop

    def skip_locked(self, query: Select[Any], *, of: Table) -> Select[Any]:
        return query.with_for_update(skip_locked=True, of=of)

    def upsert(
        self,
        table: Table,
        *,
        keys: Sequence[str],
        where: ColumnElement[bool],
        source: Select[Any] | None = None,
    ) -> Insert:
        from sqlalchemy.dialects import postgresql

        return _upsert(postgresql.insert(table), table, keys, where, source)

    def migrate(self, connection: Connection) -> None:
        # One migrator at a time across processes.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7412093)")
        run_migrations(connection)


CHANNEL = "stepstone"
_BEGIN_IMMEDIATE = Prepared(text("BEGIN IMMEDIATE"))
_NOTIFY = Prepared(text("SELECT pg_notify(:channel, :payload)"))


class _Listener(threading.Thread):
    """LISTENs on its own connection and reconnects when the server goes away.

    NOTIFY delivers a wake-up to workers on other machines within milliseconds; polling stays
    as the fallback for the moments the listener is reconnecting.
    """

    def __init__(
        self, engine: Engine, on_signal: Callable[[int | None], None], origin: str
    ) -> None:
        super().__init__(name="stepstone-listen", daemon=True)
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._on_signal = on_signal
        self._origin = origin
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        import psycopg  # only PostgreSQL processes pay for the driver (about 19 MB)

        delay = 0.1
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.1
                    self._on_signal(None)  # anything sent while we were away: look now
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=100):
                            origin, _, pk = note.payload.rpartition(":")
                            if origin != self._origin:
                                self._on_signal(int(pk) if pk else None)
            except Exception as exc:
                if self._stopped.is_set():
                    return
                log.warning("listening for wake-ups failed (%s); retrying in %.1f s", exc, delay)
                self._stopped.wait(delay)
                delay = min(delay * 2, 5.0)
