"""The code stays typed, linted and layered: mypy strict, ruff, the import contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import stepstone

ROOT = Path(__file__).parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", "src", "tests", "examples", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_point_inward() -> None:
    result = _run("lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_surface_is_exactly_all() -> None:
    exported = {name for name in dir(stepstone) if not name.startswith("_")}
    modules = {
        "domain",
        "sdk",
        "runtime",
        "storage",
        "engine",
        "worker",
        "api",
        "cli",
        "testing",
        "graph",
    }
    assert exported - modules == set(stepstone.__all__)
    for name in stepstone.__all__:
        assert getattr(stepstone, name).__module__.startswith("stepstone.sdk")
