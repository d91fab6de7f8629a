"""Shared fixtures: a real SQLite file per test, a fake clock, an engine and a worker on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage import open_store
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker, WorkerSettings
from tests.postgres import fresh_database


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async for url in fresh_database():
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = await open_store(f"sqlite:///{tmp_path / 'stepstone.db'}")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def engine(store: SqlStore, clock: FakeClock) -> Engine:
    return Engine(store, clock=clock)


@pytest.fixture
def worker(store: SqlStore, clock: FakeClock, engine: Engine) -> Worker:
    return Worker(
        store,
        clock=clock,
        loader=engine.loader,
        notifier=engine.notifier,
        settings=WorkerSettings(hold_ms=0),
        worker_id="test-worker",
    )
