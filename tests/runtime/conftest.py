"""Runtime tests start with an empty execution counter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.support import CALLS


@pytest.fixture(autouse=True)
def _reset_calls() -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()
