"""Reader threads keep their connections open; a server that drops them costs one failed read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import Connection, create_engine, text

from stepstone.domain.errors import StoreUnavailableError
from stepstone.storage.readers import Readers

pytestmark = pytest.mark.postgres


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


async def test_one_lost_connection_makes_every_reader_reconnect(postgres_url: str) -> None:
    """After a restart every kept connection is dead; the first reader to find out tells the
    others, so each opens a new connection rather than failing a read of its own."""
    engine = create_engine(postgres_url)
    readers = Readers(engine, threads=1)
    # Three threads of their own, each keeping its connection, as the readers' threads do.
    threads = [ThreadPoolExecutor(1) for _ in range(3)]
    try:
        pids = [t.submit(readers.run_here, _backend_pid).result() for t in threads]
        assert len(set(pids)) == 3
        dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailableError, match="the database is unavailable"):
            threads[0].submit(readers.run_here, _backend_pid).result()
        after = [t.submit(readers.run_here, _backend_pid).result() for t in threads]
        assert not set(after) & set(pids)
    finally:
        for t in threads:
            t.shutdown()
        readers.close()
        engine.dispose()
