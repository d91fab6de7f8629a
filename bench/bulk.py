"""Fill a database with many stored instances at once, straight through the driver, so that
the list workload can start from a large table in seconds rather than hours."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import psycopg

from bench.databases import RunDatabase

COLUMNS = (
    "id",
    "workflow_id",
    "version_id",
    "tenant",
    "status",
    "params",
    "trigger_source",
    "created_at",
    "modified_at",
    "ended_at",
    "lease_epoch",
    "terminating",
)
ERRORED_EVERY = 10
"""One instance in ten is errored: the status filter's page comes from a tenth of the table."""


def _rows(workflow_id: str, version_id: str, n: int) -> Iterator[tuple[object, ...]]:
    start = int(time.time() * 1000) - n
    for i in range(n):
        created = start + i
        status = "errored" if i % ERRORED_EVERY == 0 else "complete"
        yield (
            f"stored-{i:08d}",
            workflow_id,
            version_id,
            "local",
            status,
            "null",
            "api",
            created,
            created,
            created,
            0,
            False,
        )


def store_instances(db: RunDatabase, workflow_id: str, version_id: str, n: int) -> None:
    """Insert ``n`` finished instances of one workflow (newest last)."""
    rows = _rows(workflow_id, version_id, n)
    if db.kind == "sqlite":
        _sqlite_insert(db, rows)
    else:
        _postgres_copy(db, rows)


def _sqlite_insert(db: RunDatabase, rows: Iterator[tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db.sqlite_path, isolation_level=None)
    try:
        placeholders = ", ".join("?" for _ in COLUMNS)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO instances ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _postgres_copy(db: RunDatabase, rows: Iterator[tuple[object, ...]]) -> None:
    with psycopg.connect(db.url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY instances ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        # autovacuum would analyze a table grown this much; do it now rather than mid-run.
        cur.execute("ANALYZE instances")
        conn.commit()
