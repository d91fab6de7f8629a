"""Figures read back from Stepstone's own records, straight through the driver."""

from __future__ import annotations

import sqlite3

from bench.databases import RunDatabase, libpq_url

_SLEEP_LATENESS = """
SELECT after.started_at - nap.wake_at
FROM steps AS nap JOIN steps AS after ON after.instance_pk = nap.instance_pk
WHERE nap.name = 'nap' AND nap.count = 1 AND after.name = 'after' AND after.count = 1
"""
"""For each ``bench-sleep`` instance: when its step after the sleep started, less the sleep's
own deadline (both on the engine's wall clock, in ms)."""


def sleep_lateness(db: RunDatabase) -> list[float]:
    """How late each sleeper woke, counted from its sleep's deadline: what the end-to-end
    lateness (after - before - the sleep) holds besides the commit of the step before."""
    if db.kind == "sqlite":
        with sqlite3.connect(db.sqlite_path) as conn:
            rows = conn.execute(_SLEEP_LATENESS).fetchall()
    else:
        import psycopg  # not loaded by SQLite runs, whose memory is measured

        with psycopg.connect(libpq_url(db.url)) as conn:
            rows = conn.execute(_SLEEP_LATENESS).fetchall()
    return [float(late) for (late,) in rows]
