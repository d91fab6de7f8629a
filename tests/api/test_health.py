"""The app factory serves ``/healthz`` and reports an unreachable database as 503."""

from __future__ import annotations

from pathlib import Path

import httpx

from stepstone.api import create_app
from stepstone.engine import Engine
from stepstone.storage import open_store


async def _get(engine: Engine, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


async def test_healthz_is_ok_with_a_database(engine: Engine) -> None:
    response = await _get(engine, "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_is_503_without_a_database(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gone' / 'x.db'}", migrate=False)
    (tmp_path / "gone").rmdir()
    try:
        response = await _get(Engine(store), "/healthz")
    finally:
        await store.close()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
