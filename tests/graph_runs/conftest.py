from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stepstone.engine import Engine
from tests.graph_runs.support import TIMELINE, Graphs


@pytest.fixture(autouse=True)
def _clear_timeline() -> Iterator[None]:
    TIMELINE.clear()
    yield
    TIMELINE.clear()


@pytest.fixture
async def graphs(engine: Engine) -> Graphs:
    await engine.deploy_path(Path(__file__).parent / "jobs.py")
    return Graphs(engine)
