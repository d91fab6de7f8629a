"""A fresh PostgreSQL database per test, or a clear skip (a failure in CI) when there is none."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from stepstone.storage.dialect import run_migrations

ADMIN_URL = os.environ.get(
    "STEPSTONE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def postgres_required() -> bool:
    """CI must test PostgreSQL; elsewhere a missing server only skips those tests."""
    return bool(os.environ.get("CI") or os.environ.get("STEPSTONE_REQUIRE_POSTGRES"))


async def fresh_database(template: str | None = None) -> AsyncIterator[str]:
    """A new empty database (or a copy of ``template``), dropped afterwards."""
    # psycopg's own async connection, one per statement: SQLAlchemy's asyncio extension needs
    # greenlet, which SQLAlchemy 2.1 no longer installs; and a connection kept from the CREATE
    # would be dead after a test restarts the server.
    name = f"stepstone_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        await _admin(f'CREATE DATABASE "{name}"{copy}')
    except psycopg.Error as exc:
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message + " (set STEPSTONE_TEST_POSTGRES_URL to test it)")
    try:
        yield url_of(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(statement: str) -> None:
    """Run ``statement`` outside a transaction (as CREATE and DROP DATABASE must be)."""
    libpq = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(libpq, autocommit=True) as conn:
        await conn.execute(statement)


def url_of(database: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"


@contextmanager
def migrated_template() -> Iterator[str]:
    """A database with the schema migrated, to copy per test (CREATE DATABASE ... TEMPLATE)."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"stepstone_template_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message + " (set STEPSTONE_TEST_POSTGRES_URL to test it)")
    try:
        migrator = create_engine(url_of(name))
        with migrator.begin() as conn:
            run_migrations(conn)
        migrator.dispose()
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
