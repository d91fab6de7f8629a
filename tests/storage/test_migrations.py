"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from stepstone.storage import open_store
from stepstone.storage.tables import metadata


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


async def _migrated_diff(url: str) -> list[Any]:
    store = await open_store(url)
    try:
        return await store._db.read(_diff)
    finally:
        await store.close()


async def test_sqlite_migrations_match_the_tables(tmp_path: Any) -> None:
    assert await _migrated_diff(f"sqlite:///{tmp_path / 'm.db'}") == []


@pytest.mark.postgres
async def test_postgres_migrations_match_the_tables(postgres_url: str) -> None:
    assert await _migrated_diff(postgres_url) == []


async def test_migrating_twice_is_a_no_op(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    for _ in range(2):
        store = await open_store(url)
        await store.close()
    assert await _migrated_diff(url) == []


def test_the_schema_revision_constant_is_alembics_head(tmp_path: Any) -> None:
    """Starting skips Alembic when the stored revision is ``SCHEMA_REVISION``: it must be the
    newest migration, or a database would never be brought up to date."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from stepstone.storage.dialect import SCHEMA_REVISION

    config = Config()
    config.set_main_option("script_location", str(files("stepstone.storage") / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
