"""Shared fixtures: a real SQLite file per test, a fake clock, an engine and a worker on them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage import open_store
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker, WorkerSettings
from tests.postgres import fresh_database, migrated_template


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async for url in fresh_database():
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


BACKENDS = os.environ.get("STEPSTONE_TEST_BACKENDS", "sqlite,postgresql").split(",")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """One migrated database per test session; each test gets a quick copy of it."""
    with migrated_template() as name:
        yield name


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A real store: a SQLite file, and (marked ``postgres``) a PostgreSQL database."""
    if request.param == "sqlite":
        store = await open_store(f"sqlite:///{tmp_path / 'stepstone.db'}")
        try:
            yield store
        finally:
            await store.close()
        return
    request.applymarker(pytest.mark.postgres)
    template = request.getfixturevalue("postgres_template")
    async for url in fresh_database(template):
        store = await open_store(url, migrate=False)
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
