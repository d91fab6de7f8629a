"""Open a store from a URL as users write it."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from stepstone.domain.errors import ValidationError
from stepstone.storage.dialect import PostgresDialect, SqliteDialect
from stepstone.storage.sql import SqlStore

DEFAULT_DATA_DIR = Path(".stepstone")
ENV_URL = "STEPSTONE_DATABASE_URL"
_SYNC_LEVELS = {"OFF", "NORMAL", "FULL", "EXTRA"}


def default_url() -> str:
    return os.environ.get(ENV_URL) or f"sqlite:///{DEFAULT_DATA_DIR / 'stepstone.db'}"


def normalise_url(url: str) -> str:
    """``sqlite:///x.db``, a bare file path, or ``postgresql://...`` -> an async driver URL."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
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
        dialect = SqliteDialect(synchronous)
        writer = create_async_engine(parsed, pool_size=1, max_overflow=0, pool_timeout=60)
        reader = create_async_engine(parsed, pool_size=4, max_overflow=4)
        dialect.configure(writer, immediate=True)
        dialect.configure(reader, immediate=False)
        store = SqlStore(writer, reader, dialect)
    else:
        engine = create_async_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True)
        store = SqlStore(engine, engine, PostgresDialect())
    if migrate:
        await store.migrate()
    return store
