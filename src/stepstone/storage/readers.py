"""Reader threads, each with one connection it keeps open in autocommit mode.

A read through a pool pays for more than its statements: the checkout (with a ping), a BEGIN
and a ROLLBACK, each a round trip to PostgreSQL. Keeping each thread's connection open, with
every statement committing on its own, leaves only the statements' own round trips. Reads need
no transaction: each statement sees committed data (a page and its total count may be a commit
apart, as any two requests may be).

When one reader finds its connection lost, the server has most likely dropped all of them (a
restart, a failover): every reader opens a new one before its next read, as SQLAlchemy's pool
invalidates itself on a disconnect, instead of each finding out with a failed read of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InvalidRequestError

from stepstone.storage.commit import connection_lost, translate

T = TypeVar("T")


class Readers:
    def __init__(self, engine: Engine, threads: int) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="stepstone-read")
        self._local = threading.local()
        self._open: set[Connection] = set()
        self._lock = threading.Lock()
        self._generation = 0
        """Bumped when a connection is lost; connections opened before it are not used again."""

    async def run(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.run_here, fn)

    def run_here(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on this thread's connection (opened on first use)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation:
            self._drop(conn)
            conn = None
        try:
            if conn is None:
                self._local.generation = self._generation
                conn = self._local.conn = self._engine.connect()
                with self._lock:
                    self._open.add(conn)
            result = fn(conn)
            conn.commit()  # ends SQLAlchemy's own bookkeeping; the driver has nothing to commit
            return result
        except (DBAPIError, InvalidRequestError) as exc:
            if isinstance(exc, DBAPIError) and connection_lost(exc):
                self._generation += 1
            if conn is not None:
                self._drop(conn)
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        except BaseException:
            if conn is not None:
                conn.rollback()
            raise

    def _drop(self, conn: Connection) -> None:
        """Forget a connection a failure may have broken; the next read opens another."""
        self._local.conn = None
        with self._lock:
            self._open.discard(conn)
        try:
            conn.invalidate()
            conn.close()
        except Exception:  # pragma: no cover - it is gone either way
            pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
