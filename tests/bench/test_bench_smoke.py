"""The benchmark harness keeps working: a tiny run on SQLite, without the peer; a run that is
terminated cleans up after itself."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from bench.config import WORKLOADS
from bench.databases import libpq_url
from psycopg import sql

from tests.e2e.process import wait_for

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
    assert result["physical"]["event_loop_callbacks_per_s"] > 0
    assert set(result["workloads"]) == set(WORKLOADS)
    for name, workload in result["workloads"].items():
        assert workload["errors"] == [], name
        median = workload["engines"]["stepstone"]["median"]
        assert median, name
        for metric, value in median.items():
            if metric == "rss_base_mb" or metric.startswith("all_asleep"):
                continue
            assert value is not None, (name, metric)
            if metric.startswith("sleep_late_"):  # whole ms on the engine's clock: may be 0
                assert value >= 0, (name, metric, value)
                continue
            assert value > 0, (name, metric, value)
    timers = result["workloads"]["timers"]["engines"]["stepstone"]["median"]
    assert {"sleep_late_p50_ms", "sleep_late_p99_ms"} <= timers.keys()


async def test_a_terminated_run_leaves_no_database_behind(postgres_url: str) -> None:
    """SIGTERM mid-run: the run's process is killed and its database dropped (a database left
    behind kept a backend busy with the killed run's COPY, slowing every later benchmark)."""
    server = libpq_url(postgres_url.rsplit("/", 1)[0] + "/postgres")
    await asyncio.to_thread(_terminate_mid_run, server)


def _terminate_mid_run(server: str) -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--tiny", "--db", server, "--workloads", "lists"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    mine = f"bench\\_{bench.pid}\\_%"

    def databases() -> list[str]:
        with psycopg.connect(server, autocommit=True) as conn:
            found = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [mine])
            return [row[0] for row in found]

    try:
        wait_for(lambda: bool(databases()), timeout=60, what="the run's database")
        bench.send_signal(signal.SIGTERM)
        _out, err = bench.communicate(timeout=30)
        assert bench.returncode == 128 + signal.SIGTERM, err
        wait_for(lambda: not databases(), timeout=10, what="the run's database to be dropped")
    finally:
        bench.kill()
        for name in databases():  # only if the test failed: leave the server clean anyway
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
