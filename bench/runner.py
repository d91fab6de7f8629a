"""Run a plan: the physical references, then every workload on every engine, alternating which
engine goes first, each run in a fresh process on a fresh database."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench import physical
from bench.child import RESULT_MARK
from bench.config import Plan
from bench.databases import fresh_database
from bench.http_load import ROOT
from bench.stats import median

Say = Callable[[str], None]


def run_child(spec: dict[str, Any], timeout_s: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), *sys.path]))}
    done = subprocess.run(
        [sys.executable, "-m", "bench.child", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            figures: dict[str, float] = json.loads(line.removeprefix(RESULT_MARK))
            return figures
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"exit {done.returncode}, no figures:\n{tail}")


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in runs[0] if all(k in r for r in runs)] if runs else []
    return {k: median([r[k] for r in runs]) for k in keys}


def run_workload(plan: Plan, workload: str, say: Say) -> dict[str, Any]:
    engines = plan.engines_for(workload)
    runs: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    errors: list[str] = []
    for repeat in range(plan.repeats_for(workload)):
        order = engines if repeat % 2 == 0 else tuple(reversed(engines))
        for engine in order:
            with fresh_database(plan.db, plan.synchronous, f"{workload}-{engine}") as db:
                spec = {
                    "workload": workload,
                    "engine": engine,
                    "db": asdict(db),
                    "sizes": plan.sizes.to_json(),
                }
                started = time.perf_counter()
                try:
                    figures = run_child(spec, plan.sizes.child_timeout_s)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    errors.append(f"{engine} run {repeat + 1}: {exc}")
                    say(f"  {workload} on {engine}: FAILED ({str(exc).splitlines()[0]})")
                    continue
            runs[engine].append(figures)
            say(
                f"  {workload} on {engine}, run {repeat + 1}: {time.perf_counter() - started:.1f} s"
            )
    result: dict[str, Any] = {
        "engines": {e: {"runs": runs[e], "median": _medians(runs[e])} for e in engines},
        "errors": errors,
    }
    if plan.peer and len(engines) == 2:
        ours, theirs = (result["engines"][e]["median"] for e in engines)
        result["ratio"] = {
            k: ours[k] / theirs[k] if theirs.get(k) and not math.isnan(theirs[k]) else math.nan
            for k in ours
        }
    return result


def run_plan(plan: Plan, say: Say, *, reference_s: float) -> dict[str, Any]:
    say("physical references (raw commits/s) ...")
    refs = physical.measure(plan.db, reference_s)
    workloads: dict[str, Any] = {}
    for workload in plan.workloads:
        say(f"{workload} ...")
        workloads[workload] = run_workload(plan, workload, say)
    commits = physical.commits_for(refs, plan.db_kind, plan.synchronous)
    if commits:
        for name in ("sequential", "concurrent"):
            for engine in workloads.get(name, {}).get("engines", {}).values():
                rate = engine["median"].get("steps_per_s")
                if rate:
                    engine["median"]["steps_per_commit_rate"] = rate / commits
    return {"physical": refs, "workloads": workloads}
