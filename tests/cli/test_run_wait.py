"""``stepstone run --wait`` follows an instance that a separate worker process drives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.process import stepstone

pytestmark = pytest.mark.slow

FLOWS = """
from stepstone import NonRetryableError, WorkflowEntrypoint


def boom():
    raise NonRetryableError("card declined")


class Good(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("breathe", "200 ms")
        return await step.do("double", lambda: event.payload["n"] * 2)


class Bad(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("charge", boom)
"""


def test_run_wait_exits_zero_on_complete_and_one_on_error(tmp_path: Path) -> None:
    source = tmp_path / "flows.py"
    source.write_text(FLOWS)
    db = str(tmp_path / "wait.db")
    stepstone("deploy", str(source), "--db", db)
    worker = subprocess.Popen(
        [sys.executable, "-m", "stepstone.cli.main", "worker", "--db", db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "STEPSTONE_POLL_MS": "50"},
    )
    try:
        good = stepstone("run", "good", "--params", '{"n": 21}', "--wait", "--db", db, check=False)
        assert good.returncode == 0, good.stderr
        assert "complete" in good.stderr
        assert "42" in good.stderr
        bad = stepstone("run", "bad", "--wait", "--db", db, check=False)
        assert bad.returncode == 1
        assert "NonRetryableError: card declined" in bad.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
