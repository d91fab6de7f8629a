"""What the machine allows, measured in the same run: commits/s of one small insert each, with
the pragmas Stepstone uses (WAL, synchronous NORMAL or FULL), and how fast the processor runs an
event loop. Both engines run their Python on one core, so their figures follow that last one:
on this virtual machine it has differed twofold from one hour to another."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.databases import fresh_database


def loop_callbacks(seconds: float) -> float:
    """asyncio callbacks/s, each scheduling the next: the processor's speed as an event loop
    sees it (a fixed piece of work, whatever the disk)."""

    async def run() -> float:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        done = 0
        start = time.perf_counter()
        deadline = start + seconds

        def tick() -> None:
            nonlocal done
            done += 1
            if done % 1000 == 0 and time.perf_counter() >= deadline:
                finished.set_result(done / (time.perf_counter() - start))
            else:
                loop.call_soon(tick)

        loop.call_soon(tick)
        return await finished

    return asyncio.run(run())


def sqlite_commits(synchronous: str, seconds: float, batch: int = 1) -> float:
    """Rows/s when each transaction inserts ``batch`` small rows (``batch=1``: commits/s)."""
    with tempfile.TemporaryDirectory(prefix="stepstone-bench-raw-") as folder:
        conn = sqlite3.connect(Path(folder) / "raw.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            rows = [("x" * 32,)] * batch
            done = 0
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO t (v) VALUES (?)", rows)
                conn.execute("COMMIT")
                done += batch
            return done / (time.perf_counter() - start)
        finally:
            conn.close()


def postgres_commits(server: str, seconds: float, batch: int = 1) -> float:
    """Rows/s from one client, each transaction inserting ``batch`` rows, synchronous_commit
    as the server has it (on by default)."""
    with fresh_database(server, "NORMAL", "raw") as db, psycopg.connect(db.url) as conn:
        conn.execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        conn.commit()
        rows = [("x" * 32,)] * batch
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        with conn.cursor() as cur:
            while time.perf_counter() < deadline:
                cur.executemany("INSERT INTO t (v) VALUES (%s)", rows)
                conn.commit()
                done += batch
        return done / (time.perf_counter() - start)


def measure(db: str, seconds: float) -> dict[str, Any]:
    """Every reference for ``db`` (``sqlite`` or a PostgreSQL server URL)."""
    refs: dict[str, Any] = {
        "event_loop_callbacks_per_s": loop_callbacks(seconds),
        "sqlite_version": sqlite3.sqlite_version,
        "sqlite_wal_normal_commits_per_s": sqlite_commits("NORMAL", seconds),
        "sqlite_wal_full_commits_per_s": sqlite_commits("FULL", seconds),
        "sqlite_wal_normal_rows_per_s_batch100": sqlite_commits("NORMAL", seconds, 100),
    }
    if db != "sqlite":
        refs["postgres_commits_per_s"] = postgres_commits(db, seconds)
        refs["postgres_rows_per_s_batch100"] = postgres_commits(db, seconds, 100)
    return refs


def commits_for(refs: dict[str, Any], db_kind: str, synchronous: str) -> float | None:
    """The commits/s the engines' step rates compare with."""
    if db_kind == "postgresql":
        value = refs.get("postgres_commits_per_s")
    else:
        value = refs.get(f"sqlite_wal_{synchronous.lower()}_commits_per_s")
    return float(value) if value else None
