"""The benchmark harness keeps working: a tiny run on SQLite, without the peer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench.config import WORKLOADS

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


def test_tiny_run_reports_every_workload_with_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--db", "sqlite", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["meta"]["mode"] == "tiny"
    assert result["physical"]["sqlite_wal_normal_commits_per_s"] > 0
    assert set(result["workloads"]) == set(WORKLOADS)
    for name, workload in result["workloads"].items():
        assert workload["errors"] == [], name
        median = workload["engines"]["stepstone"]["median"]
        assert median, name
        for metric, value in median.items():
            if metric == "rss_base_mb" or metric.startswith("all_asleep"):
                continue
            assert value is not None, (name, metric)
            assert value > 0, (name, metric, value)
