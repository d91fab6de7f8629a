"""Kill ``stepstone serve`` with SIGKILL mid-instance; a restarted server finishes the work.

Steps append their name to a file: after the restart every step has run, each committed step's
side effect happened exactly once, and only a step that was mid-attempt at the kill may repeat.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.process import Server, stepstone, wait_for

pytestmark = pytest.mark.slow

WORKFLOW = """
import time
from pathlib import Path
from stepstone import WorkflowEntrypoint

LOG = Path({log!r})


def append(name):
    with LOG.open("a") as f:
        f.write(name + "\\n")
    time.sleep({step_seconds})
    return name


class Appender(WorkflowEntrypoint):
    async def run(self, event, step):
        for i in range(event.payload["before"]):
            await step.do(f"before-{{i}}", append, f"before-{{i}}")
        await step.sleep("nap", "{nap}")
        for i in range(event.payload["after"]):
            await step.do(f"after-{{i}}", append, f"after-{{i}}")
        return "done"
"""

FAST_LEASE = {"STEPSTONE_LEASE_MS": "1500", "STEPSTONE_HEARTBEAT_MS": "300"}


def _setup(tmp_path: Path, *, step_seconds: float, nap: str) -> tuple[str, Path]:
    log = tmp_path / "side-effects.log"
    log.touch()
    source = tmp_path / "appender.py"
    source.write_text(WORKFLOW.format(log=str(log), step_seconds=step_seconds, nap=nap))
    db = str(tmp_path / "stepstone.db")
    stepstone("deploy", str(source), "--db", db)
    return db, log


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def _status(db: str, instance_id: str) -> dict[str, object]:
    shown = stepstone("instances", "show", "appender", instance_id, "--json", "--db", db)
    data: dict[str, object] = json.loads(shown.stdout)
    return data


def test_kill_during_a_sleep_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    db, log = _setup(tmp_path, step_seconds=0, nap="3 seconds")
    server = Server(db, tmp_path / "server.log", env=FAST_LEASE)
    try:
        stepstone(
            "run",
            "appender",
            "--id",
            "order-1",
            "--params",
            '{"before": 3, "after": 3}',
            "--db",
            db,
        )
        wait_for(lambda: len(_lines(log)) == 3, what="the steps before the sleep")
        wait_for(lambda: _status(db, "order-1")["status"] == "waiting", what="the sleep")
    finally:
        server.kill()

    server = Server(db, tmp_path / "server.log", env=FAST_LEASE)
    try:
        wait_for(
            lambda: _status(db, "order-1")["status"] == "complete",
            timeout=30,
            what="the instance to complete after the restart",
        )
    finally:
        assert server.stop() == 0
    assert _lines(log) == [f"before-{i}" for i in range(3)] + [f"after-{i}" for i in range(3)]


def test_kill_mid_step_repeats_at_most_the_step_in_flight(tmp_path: Path) -> None:
    db, log = _setup(tmp_path, step_seconds=0.1, nap="0 seconds")
    server = Server(db, tmp_path / "server.log", env=FAST_LEASE)
    try:
        stepstone(
            "run", "appender", "--id", "busy", "--params", '{"before": 10, "after": 10}', "--db", db
        )
        wait_for(lambda: len(_lines(log)) >= 6, what="a few steps to run")
    finally:
        server.kill()
    committed_at_kill = {
        s["name"]
        for s in _status(db, "busy")["steps"]  # type: ignore[attr-defined]
        if s["state"] == "complete" and s["type"] == "step"
    }
    assert len(committed_at_kill) >= 5

    server = Server(db, tmp_path / "server.log", env=FAST_LEASE)
    try:
        wait_for(
            lambda: _status(db, "busy")["status"] == "complete",
            timeout=30,
            what="the instance to complete after the restart",
        )
    finally:
        assert server.stop() == 0
    counts = Counter(_lines(log))
    expected = {f"before-{i}" for i in range(10)} | {f"after-{i}" for i in range(10)}
    assert set(counts) == expected
    assert all(counts[name] == 1 for name in committed_at_kill)
    repeated = [name for name, n in counts.items() if n > 1]
    assert len(repeated) <= 1, f"only the step in flight at the kill may repeat: {repeated}"


def test_sigterm_lets_the_running_step_commit_then_hands_over(tmp_path: Path) -> None:
    db, log = _setup(tmp_path, step_seconds=0.5, nap="0 seconds")
    server = Server(db, tmp_path / "server.log", env=FAST_LEASE)
    stepstone(
        "run", "appender", "--id", "drain", "--params", '{"before": 4, "after": 0}', "--db", db
    )
    wait_for(lambda: len(_lines(log)) >= 1, what="the first step to start")
    assert server.stop() == 0  # SIGTERM: the attempt in flight finishes and commits
    committed = [
        s["name"]
        for s in _status(db, "drain")["steps"]  # type: ignore[attr-defined]
        if s["state"] == "complete"
    ]
    assert committed == _lines(log)

    server = Server(db, tmp_path / "server.log", env=FAST_LEASE)
    try:
        wait_for(
            lambda: _status(db, "drain")["status"] == "complete",
            timeout=30,
            what="the instance to complete after the restart",
        )
    finally:
        assert server.stop() == 0
    assert _lines(log) == [f"before-{i}" for i in range(4)]
