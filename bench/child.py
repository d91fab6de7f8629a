"""``python -m bench.child SPEC``: one run of one workload on one engine, in a fresh process.

Each run gets its own process (and database) so that no run inherits another's memory, caches
or, for DBOS, its process-wide singleton. The figures are printed as one line starting with
``RESULT_MARK``; everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import asdict
from typing import Any

from bench.config import Sizes
from bench.databases import RunDatabase

RESULT_MARK = "BENCH-RESULT "


async def run(workload: str, engine: str, db: RunDatabase, sizes: Sizes) -> dict[str, float]:
    if workload in ("sequential", "concurrent", "timers"):
        return await _in_process(workload, engine, db, sizes)
    from bench import http_load

    spec: dict[str, Any] = {"engine": engine, "db": asdict(db), "worker": True, "stored": 0}
    if workload == "http_create":
        spec["worker"] = False
    elif workload == "lists":
        spec.update(worker=False, stored=sizes.stored)
    async with http_load.server_process(spec, sizes.child_timeout_s) as server:
        if workload == "http_create":
            return await http_load.http_create(server, sizes)
        if workload == "event":
            return await http_load.event_round_trip(server, engine, sizes.events)
        if workload == "lists":
            return await http_load.lists(server, sizes)
    raise ValueError(f"unknown workload {workload!r}")


async def _in_process(
    workload: str, engine: str, db: RunDatabase, sizes: Sizes
) -> dict[str, float]:
    if engine == "stepstone":
        from bench import stepstone_side

        async with stepstone_side.harness(db) as h:
            if workload == "sequential":
                return await stepstone_side.sequential(h, sizes.sequential)
            if workload == "concurrent":
                return await stepstone_side.concurrent(h, sizes.concurrent)
            return await stepstone_side.timers(
                h, db, sizes.sleepers, sizes.sleep_ms, sizes.child_timeout_s
            )
    from bench import dbos_side

    async with dbos_side.harness(db):
        if workload == "sequential":
            return await dbos_side.sequential(sizes.sequential)
        if workload == "concurrent":
            return await dbos_side.concurrent(sizes.concurrent)
        return await dbos_side.timers(sizes.sleepers, sizes.sleep_ms)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(sys.argv[1])
    figures = asyncio.run(
        run(
            spec["workload"],
            spec["engine"],
            RunDatabase(**spec["db"]),
            Sizes(**spec["sizes"]),
        )
    )
    print(RESULT_MARK + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
