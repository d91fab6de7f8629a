"""Group commit: many callers' writes in one transaction, each caller with its own outcome.

A commit costs the same whether it carries one step result or two hundred, so writes that are
queued while the previous commit is being made go into the next transaction together. What
one caller did must never fail another's commit: an operation that raises is taken out, the
transaction is rolled back and made again without it, and its error goes to its caller alone.
Operations are functions of the connection with no effect outside the database, so making the
transaction again is safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    InterfaceError,
    InvalidRequestError,
    OperationalError,
)

from stepstone.domain.errors import StoreUnavailableError, ValidationError

Batch = Callable[[Connection, Sequence[Any]], Sequence[Any]]
"""A write that many callers' items share: it handles all of them in a few statements and returns
one outcome per item, a result or the exception that item alone fails with (written nothing
for it). If it raises instead, its items are tried again one at a time."""

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure, deadlock: PostgreSQL rolled the transaction back; make it again."""
SHUTDOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
"""Admin shutdown, crash shutdown, cannot connect now: the connection is gone."""
MAX_RETRIES = 5


PENDING: Any = object()
"""The outcome of an operation not committed (nor failed) yet."""


@dataclass(eq=False, slots=True)
class Op:
    """One caller's write, waiting for its commit."""

    future: asyncio.Future[Any]
    fn: Callable[[Connection], Any] | None = None
    batch: Batch | None = None
    item: Any = None
    single: bool = False
    """The write is one statement: alone in its batch, it may run in autocommit mode."""
    outcome: Any = PENDING


class Busy(Exception):
    """SQLite's write lock is held by another connection, and this committer may not wait.
    Nothing was committed; operations whose outcome is still ``PENDING`` must go elsewhere."""


class _UnitFailed(Exception):
    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error


def units(ops: Sequence[Op]) -> list[list[Op]]:
    """Plain writes run alone; the items of one ``Batch`` run together, in arrival order."""
    found: list[list[Op]] = []
    shared: dict[Batch, list[Op]] = {}  # bound methods are equal when self and function are
    for op in ops:
        if op.batch is None:
            found.append([op])
            continue
        group = shared.get(op.batch)
        if group is None:
            group = shared[op.batch] = []
            found.append(group)
        group.append(op)
    return found


def _run_unit(conn: Connection, unit: list[Op]) -> Sequence[Any]:
    head = unit[0]
    if head.batch is None:
        assert head.fn is not None
        return [head.fn(conn)]
    outcomes = head.batch(conn, [op.item for op in unit])
    if len(outcomes) != len(unit):
        raise RuntimeError("a batched write returned the wrong number of outcomes")
    return outcomes


def translate(exc: BaseException) -> BaseException:
    """Driver errors as callers understand them; anything else unchanged."""
    if isinstance(exc, InvalidRequestError) and not isinstance(exc, DBAPIError):
        # SQLAlchemy refusing a connection left unusable by a failure (a pending rollback).
        return StoreUnavailableError(f"the database is unavailable: {exc}")
    if isinstance(exc, DataError):
        # A value the database refuses (PostgreSQL text cannot hold NUL characters): the
        # caller's input, not the server, is at fault.
        return ValidationError(f"a value cannot be stored: {_first_line(exc)}")
    if isinstance(exc, OperationalError | InterfaceError):
        # Connection refused or dropped, server restarting, database locked too long: the
        # callers' business is "try again later", not the driver's details.
        return StoreUnavailableError(f"the database is unavailable: {_first_line(exc)}")
    return exc


def _first_line(exc: DBAPIError) -> str:
    text = str(exc.orig or exc).strip()
    return text.splitlines()[0] if text else ""


def _is_busy(exc: DBAPIError) -> bool:
    return isinstance(exc, OperationalError) and (
        "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig)
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def connection_lost(exc: DBAPIError) -> bool:
    """Whether the error means the connection is gone: SQLAlchemy saw a disconnect, or the
    server said so (SQLSTATE class 08, or 57P01-57P03: the server shutting down or starting)."""
    state = _sqlstate(exc) or ""
    return bool(exc.connection_invalidated) or state[:2] == "08" or state in SHUTDOWN_SQLSTATES


def _belongs_to_transaction(exc: BaseException, *, wait: bool) -> bool:
    """Whether an operation's error is the transaction's (a lock, a deadlock, a lost
    connection) rather than the operation's own."""
    if not isinstance(exc, DBAPIError):
        return isinstance(exc, InvalidRequestError)  # the connection is in no state to go on
    return (
        (not wait and _is_busy(exc))
        or _sqlstate(exc) in RETRYABLE_SQLSTATES
        or connection_lost(exc)
        or isinstance(exc, InterfaceError)
    )


class Committer:
    """Runs batches of ``Op`` in transactions on one connection it keeps open.

    ``wait=False`` is for the event loop's own committer: a write lock held elsewhere raises
    ``Busy`` at once (before any operation ran) instead of waiting.
    """

    def __init__(
        self,
        engine: Engine,
        begin: Callable[[Connection], None],
        *,
        wait: bool = True,
        single_autocommit: bool = False,
    ) -> None:
        self._engine = engine
        self._begin = begin
        self._wait = wait
        self._single_autocommit = single_autocommit
        """A batch of one single-statement write runs without BEGIN and COMMIT (on a server,
        the statement commits itself: a round trip or two fewer, about 100 µs here)."""
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
            if not self._wait:
                self.pragma("busy_timeout=0")
                # Checkpoints fsync: they are left to a committer that may wait.
                self.pragma("wal_autocheckpoint=0")
        return self._conn

    def pragma(self, pragma: str) -> Any:
        """Run a SQLite PRAGMA on the driver's connection itself, outside any transaction."""
        dbapi = self._connection().connection.dbapi_connection
        assert dbapi is not None
        return dbapi.execute(f"PRAGMA {pragma}").fetchall()

    def run(self, ops: Sequence[Op]) -> None:
        """Commit ``ops`` in as few transactions as their failures allow; set each outcome."""
        pending = units(ops)
        retries = 0
        while pending:
            try:
                conn = self._connection()
                results = []
                with self._transaction(conn, pending):
                    for index, unit in enumerate(pending):
                        try:
                            results.append(_run_unit(conn, unit))
                        except (KeyboardInterrupt, SystemExit):
                            raise
                        except BaseException as exc:
                            raise _UnitFailed(index, exc) from exc
            except _UnitFailed as failed:
                if not _belongs_to_transaction(failed.error, wait=self._wait):
                    unit = pending.pop(failed.index)
                    if len(unit) > 1:  # a shared write failed as a whole: find whose item it is
                        pending[failed.index : failed.index] = [[op] for op in unit]
                    else:
                        unit[0].outcome = translate(failed.error)
                    continue
                error: BaseException = failed.error
            except Exception as exc:  # the transaction itself failed: connection, lock, server
                error = exc
            else:
                for unit, outcomes in zip(pending, results, strict=True):
                    for op, outcome in zip(unit, outcomes, strict=True):
                        op.outcome = outcome
                return
            if isinstance(error, DBAPIError):
                if not self._wait and _is_busy(error):
                    raise Busy from error
                if _sqlstate(error) in RETRYABLE_SQLSTATES and retries < MAX_RETRIES:
                    retries += 1
                    continue
            self.reset()
            failure = translate(error)
            for unit in pending:
                for op in unit:
                    op.outcome = failure
            return

    @contextmanager
    def _transaction(self, conn: Connection, pending: list[list[Op]]) -> Iterator[None]:
        alone = len(pending) == 1 and len(pending[0]) == 1
        if not (self._single_autocommit and alone and pending[0][0].single):
            with conn.begin():
                self._begin(conn)
                yield
            return
        dbapi: Any = conn.connection.dbapi_connection
        dbapi.autocommit = True
        try:
            with conn.begin():  # SQLAlchemy's bookkeeping; the driver's commit does nothing
                yield
        finally:
            try:
                dbapi.autocommit = False
            except Exception:  # a broken connection: never reuse it in autocommit mode
                self.reset()

    def reset(self) -> None:
        """Drop the connection (after the database failed under it); the next batch opens one."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # pragma: no cover - the connection is gone either way
                pass
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
