"""Open a store from a URL as users write it."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from stepstone.domain.errors import ValidationError
from stepstone.storage.database import Database
from stepstone.storage.dialect import PostgresDialect, SqliteDialect
from stepstone.storage.sql import SqlStore

DEFAULT_DATA_DIR = Path(".stepstone")
ENV_URL = "STEPSTONE_DATABASE_URL"
_SYNC_LEVELS = {"OFF", "NORMAL", "FULL", "EXTRA"}
READ_THREADS = 2
"""SQLite reader threads; with WAL they never wait for the one writer."""
PG_THREADS = 8
"""PostgreSQL reader threads (and their connections) per process, besides the committer's."""
_INLINE_LEVELS = {"OFF", "NORMAL"}
"""Synchronous levels at which a WAL commit does not fsync, so it may run on the event loop."""


def default_url() -> str:
    return os.environ.get(ENV_URL) or f"sqlite:///{DEFAULT_DATA_DIR / 'stepstone.db'}"


def normalise_url(url: str) -> str:
    """``sqlite:///x.db``, a bare file path, or ``postgresql://...`` -> a driver URL."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValidationError(
        f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://..."
    )


async def open_store(url: str | None = None, *, migrate: bool = True) -> SqlStore:
    """Open (and by default migrate) the store at ``url`` (default: ``$STEPSTONE_DATABASE_URL``
    or ``./.stepstone/stepstone.db``).

    SQLite accepts ``?synchronous=FULL`` for power-loss safety; the default, NORMAL in WAL mode,
    never loses a committed transaction when a process is killed, only on power loss.
    """
    parsed = make_url(normalise_url(url or default_url()))
    store: SqlStore
    if parsed.get_backend_name() == "sqlite":
        synchronous = str(parsed.query.get("synchronous", "NORMAL")).upper()
        if synchronous not in _SYNC_LEVELS:
            raise ValidationError(f"synchronous must be one of {sorted(_SYNC_LEVELS)}")
        parsed = parsed.difference_update_query(["synchronous"])
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        sqlite = SqliteDialect(synchronous)
        options = {"connect_args": {"check_same_thread": False}}
        # Writers: the loop's committer and the thread's; readers: the threads and the loop's.
        writer = create_engine(parsed, pool_size=2, max_overflow=0, **options)
        reader = create_engine(
            parsed,
            pool_size=READ_THREADS + 1,
            max_overflow=0,
            pool_reset_on_return=None,
            **options,
        )
        sqlite.configure(writer)
        sqlite.configure(reader)
        inline = synchronous in _INLINE_LEVELS
        db = Database(writer, reader, sqlite.begin_write, read_threads=READ_THREADS, inline=inline)
        store = SqlStore(db, sqlite)
    else:
        engine = create_engine(parsed, pool_size=PG_THREADS + 1, max_overflow=0, pool_pre_ping=True)
        dialect = PostgresDialect()
        db = Database(
            engine, engine, dialect.begin_write, read_threads=PG_THREADS, single_autocommit=True
        )
        store = SqlStore(db, dialect)
    if migrate:
        await store.migrate()
    return store
