"""A fresh database for every run: a SQLite file in a temporary folder, or a PostgreSQL
database created on the given server and dropped afterwards."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RunDatabase:
    kind: str
    """``sqlite`` or ``postgresql``."""
    url: str
    """``sqlite:///PATH`` or ``postgresql://...`` (libpq form, no driver suffix)."""
    synchronous: str = "NORMAL"

    @property
    def stepstone_url(self) -> str:
        if self.kind == "sqlite":
            return f"{self.url}?synchronous={self.synchronous}"
        return self.url

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` (what psycopg and DBOS take)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def fresh_database(db: str, synchronous: str, label: str) -> Iterator[RunDatabase]:
    """Yield an empty database for one run; remove it afterwards."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="stepstone-bench-") as folder:
            path = Path(folder) / f"{label}.db"
            yield RunDatabase("sqlite", f"sqlite:///{path}", synchronous)
        return
    # Imported here: a SQLite run's processes never load the PostgreSQL driver (their memory
    # is measured).
    import psycopg
    from psycopg import sql

    admin = libpq_url(db)
    name = f"bench_{os.getpid()}_{next(_counter)}_{label}".replace("-", "_").lower()
    try:
        # Created inside the try: a SIGTERM (``__main__``) arriving once the database exists
        # but before the yield must still drop it.
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield RunDatabase("postgresql", with_database(admin, name), synchronous)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
