"""Where transactions run: on the event loop when they cannot wait, else on a committer thread.

Every write is queued and committed together with the writes queued beside it (group commit,
``commit.py``). Where that transaction runs depends on whether it could wait:

* SQLite in WAL mode with ``synchronous=NORMAL`` (the default) commits by handing pages to the
  operating system's cache, without fsync: a step commit is about 40 µs of work. A round trip
  to another thread costs more than that on this kind of machine (80-200 µs measured, for the
  wake-ups of both threads), so these transactions run on the event loop itself, in a callback
  that gathers everything queued in the same loop iteration. They never wait: that connection's
  busy timeout is zero, so a write lock held by another process sends the batch to the
  committer thread, which may wait; WAL checkpoints, which do fsync, run on that thread too.
  A large batch (``THREAD_AT`` writes or more: a herd of instances, not a lone step) goes to
  that thread as well: SQLite releases the GIL while it works, so there its share of the
  commit runs on another core beside the loop's Python, and the hop costs little against it.
* What can wait on I/O (SQLite with ``synchronous=FULL``, every PostgreSQL transaction) runs on
  the committer thread, a batch at a time: one hop per batch, not per statement.

Reads run on reader threads, except ``lookup``: a small read by key, which on SQLite runs on the
loop for the same reason as the writes (in WAL mode a reader never waits for a writer).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from stepstone.storage.commit import PENDING, Batch, Busy, Committer, Op, translate
from stepstone.storage.readers import Readers

T = TypeVar("T")

MAX_BATCH = 256
"""Operations per transaction: bounds how long one inline commit holds the loop."""
THREAD_AT = 32
"""Where commits could run on the loop, a batch of this many writes runs on the committer
thread instead. With 10,000 sleepers falling asleep and waking at once (the bench's timers
workload), wake-ups from the sleep's deadline p50 5-17 ms against 65-415 ms all on the loop
(bench/RESULTS.md); one-at-a-time work (sequential steps, events) never reaches it and keeps
the loop's latency. 16 and 64 measured alike; 8 worse."""
CHECKPOINT_EVERY = 250
"""Inline commits between WAL checkpoints (SQLite's own default is about 1,000 pages)."""


class Database:
    """Runs ``fn(connection)`` in transactions: writes group-committed, reads on readers."""

    def __init__(
        self,
        writer: Engine,
        reader: Engine,
        begin: Callable[[Connection], None],
        *,
        read_threads: int,
        inline: bool = False,
        single_autocommit: bool = False,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self._inline = Committer(writer, begin, wait=False) if inline else None
        self._inline_reader: Connection | None = None
        self._committer = Committer(writer, begin, single_autocommit=single_autocommit)
        self._readers = Readers(reader, read_threads)
        # loop side
        self._pending: list[Op] = []
        self._flush_handle: asyncio.Handle | None = None
        self._in_thread = 0
        """Operations handed to the committer thread and not delivered yet."""
        self._commits = 0
        # shared with the committer thread, under ``_cv``
        self._cv = threading.Condition()
        self._queue: deque[Op] = deque()
        self._checkpoint_due = False
        self._closing = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ writes
    async def write(self, fn: Callable[[Connection], T], *, single: bool = False) -> T:
        """Run ``fn`` in a write transaction (shared with other writers), committed before this
        returns. ``fn`` may run more than once, so it must have no effect outside the database.
        ``single``: ``fn`` writes with one statement (see ``Op.single``)."""
        future = asyncio.get_running_loop().create_future()
        return await self._submit(Op(future, fn=fn, single=single))  # type: ignore[no-any-return]

    async def write_batched(self, batch: Batch, item: Any, *, single: bool = False) -> Any:
        """Commit ``item`` through ``batch`` together with the other items queued for it."""
        future = asyncio.get_running_loop().create_future()
        return await self._submit(Op(future, batch=batch, item=item, single=single))

    def _submit(self, op: Op) -> asyncio.Future[Any]:
        self._pending.append(op)
        if self._flush_handle is None:
            self._flush_handle = op.future.get_loop().call_soon(self._flush)
        return op.future

    def _flush(self) -> None:
        """Commit what was queued during this loop iteration: on the loop, or on the thread."""
        self._flush_handle = None
        ops, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if not ops:
            return
        if self._pending:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        if self._inline is None or self._in_thread or len(ops) >= THREAD_AT:
            # On the thread: a large batch, or one behind a thread with work (waiting for or
            # holding the lock: commits keep their order).
            self._to_thread(ops)
            return
        try:
            self._inline.run(ops)
        except Busy:
            _deliver([op for op in ops if op.outcome is not PENDING])
            self._to_thread([op for op in ops if op.outcome is PENDING])
            return
        except BaseException as exc:  # never leave a caller waiting for nothing
            for op in ops:
                if op.outcome is PENDING:
                    op.outcome = exc
        _deliver(ops)
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            with self._cv:
                self._checkpoint_due = True
                self._start_thread()
                self._cv.notify()

    def _to_thread(self, ops: Sequence[Op]) -> None:
        if not ops:
            return
        self._in_thread += len(ops)
        with self._cv:
            self._queue.extend(ops)
            self._start_thread()
            self._cv.notify()

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._commit_loop, name="stepstone-commit", daemon=True
            )
            self._thread.start()

    def _commit_loop(self) -> None:
        while True:
            with self._cv:
                while not (self._queue or self._checkpoint_due or self._closing):
                    self._cv.wait()
                if self._closing and not self._queue:
                    return
                count = min(MAX_BATCH, len(self._queue))
                ops = [self._queue.popleft() for _ in range(count)]
                checkpoint, self._checkpoint_due = self._checkpoint_due, False
            if checkpoint:
                self._checkpoint()
            if not ops:
                continue
            try:
                self._committer.run(ops)
            except BaseException as exc:  # never leave a caller waiting for nothing
                for op in ops:
                    if op.outcome is PENDING:
                        op.outcome = exc
            self._post(ops)

    def _checkpoint(self) -> None:
        try:
            self._committer.pragma("wal_checkpoint(PASSIVE)")
        except Exception:  # pragma: no cover - the next one catches up
            self._committer.reset()

    def _post(self, ops: Sequence[Op]) -> None:
        """Hand outcomes back to the loops that wait for them (from the committer thread)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Op]] = {}
        for op in ops:
            by_loop.setdefault(op.future.get_loop(), []).append(op)
        for loop, mine in by_loop.items():
            with suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._delivered, mine)

    def _delivered(self, ops: list[Op]) -> None:
        self._in_thread -= len(ops)
        _deliver(ops)

    # ------------------------------------------------------------------ reads
    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a reader thread; its statements see committed data."""
        return await self._readers.run(fn)

    async def lookup(self, fn: Callable[[Connection], T]) -> T:
        """A small read by key: on the loop where that is cheaper than a thread (SQLite)."""
        if self._inline is None:
            return await self.read(fn)
        if self._inline_reader is None:
            self._inline_reader = self.reader.connect()
            dbapi = self._inline_reader.connection.dbapi_connection
            assert dbapi is not None
            dbapi.execute("PRAGMA busy_timeout=0")
        conn = self._inline_reader
        try:
            return fn(conn)
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                return await self.read(fn)
            raise translate(exc) from exc
        finally:
            conn.rollback()

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._pending:
            self._flush()
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()
        self._readers.close()
        if self._inline is not None:
            self._inline.close()
        self._committer.close()
        if self._inline_reader is not None:
            self._inline_reader.close()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def _deliver(ops: Sequence[Op]) -> None:
    """Wake each caller with its outcome; an outcome that is an exception is raised."""
    for op in ops:
        if op.future.done():  # the caller was cancelled meanwhile
            continue
        if isinstance(op.outcome, BaseException):
            op.future.set_exception(op.outcome)
        else:
            op.future.set_result(op.outcome)
