"""Helpers for the PostgreSQL fault tests: worker subprocesses, plain SQL, the cluster itself."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from tests.e2e.process import wait_for

T = TypeVar("T")


def libpq_url(url: str) -> str:
    """The test's SQLAlchemy URL (``postgresql+psycopg://``) as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


async def query(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own short connection (autocommit); the rows it returns."""
    async with await psycopg.AsyncConnection.connect(
        libpq_url(url), autocommit=True, connect_timeout=5
    ) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall() if cursor.description else []


async def scalar(url: str, sql: str, params: Sequence[Any] = ()) -> Any:
    [[value]] = await query(url, sql, params)
    return value


async def poll(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float, what: str
) -> T:
    """Await ``read()`` until ``done(value)``; that value. Fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value}")
        await asyncio.sleep(0.1)


class WorkerProcess:
    """``stepstone worker --db URL`` in a subprocess, its output in ``log``."""

    def __init__(self, db: str, log: Path, *, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stepstone.cli.main", "worker", "--db", db],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.pid = self.proc.pid
        self.id = ""
        wait_for(self._started, what=f"worker {self.pid} to start (log: {log})")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.pid} exited with {self.proc.returncode}")
        found = re.search(r"worker (\S+) started", self.text())
        if found:
            self.id = found.group(1)
        return bool(found)

    def text(self) -> str:
        return self.log.read_text()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def stop(self) -> int:
        """SIGTERM, and the exit code once it has drained."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        return self.proc.returncode


# ---------------------------------------------------------------------- the cluster
def local_cluster() -> tuple[str, str]:
    """(version, name) of the local PostgreSQL cluster, or a skip if it cannot be controlled."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        pytest.skip("restarting PostgreSQL needs pg_ctlcluster (postgresql-common)")
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    # Columns: Ver Cluster Port Status Owner Data-directory Log-file
    rows = [line.split() for line in listed.splitlines() if line.strip()]
    for version, name, port, *_ in rows:
        if port == "5432":
            return version, name
    pytest.skip(f"no local PostgreSQL cluster on port 5432 to restart: {rows}")


def pg_ctlcluster(cluster: tuple[str, str], action: str) -> None:
    version, name = cluster
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        check=True,
        capture_output=True,
        timeout=60,
    )


async def accepts_connections(url: str) -> bool:
    try:
        return bool(await scalar(url, "SELECT 1") == 1)
    except psycopg.OperationalError:
        return False
