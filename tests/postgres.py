"""A fresh PostgreSQL database per test, or a clear skip (a failure in CI) when there is none."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ADMIN_URL = os.environ.get(
    "STEPSTONE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def postgres_required() -> bool:
    """CI must test PostgreSQL; elsewhere a missing server only skips those tests."""
    return bool(os.environ.get("CI") or os.environ.get("STEPSTONE_REQUIRE_POSTGRES"))


async def fresh_database() -> AsyncIterator[str]:
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"stepstone_test_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message + " (set STEPSTONE_TEST_POSTGRES_URL to test it)")
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
