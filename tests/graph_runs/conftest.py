from __future__ import annotations

from collections.abc import Iterator

import pytest

from stepstone.engine import Engine
from tests.graph_runs.support import JOBS, TIMELINE, Graphs


@pytest.fixture(autouse=True)
def _clear_timeline() -> Iterator[None]:
    TIMELINE.clear()
    yield
    TIMELINE.clear()


@pytest.fixture
async def graphs(engine: Engine) -> Graphs:
    await engine.deploy_path(JOBS)
    return Graphs(engine)
