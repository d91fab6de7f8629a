"""``python -m bench --quick|--full [--peer dbos] [--db sqlite|postgresql://...] [--json F]``."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import report
from bench.config import MODES, WORKLOADS, Plan
from bench.runner import run_plan


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", dest="mode", action="store_const", const="quick")
    size.add_argument("--full", dest="mode", action="store_const", const="full")
    size.add_argument(
        "--tiny",
        dest="mode",
        action="store_const",
        const="tiny",
        help="seconds-long sizes, for the smoke test",
    )
    parser.add_argument("--peer", choices=["dbos"], default=None)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a PostgreSQL server URL")
    parser.add_argument(
        "--synchronous",
        choices=["NORMAL", "FULL"],
        default="NORMAL",
        help="SQLite's synchronous level for both engines (default NORMAL)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--reference-seconds",
        type=float,
        default=None,
        help="how long each physical reference runs (default 1.5 s, full 3 s)",
    )
    return parser.parse_args(argv)


def _unwind_on_sigterm() -> None:
    """Let a SIGTERM (a timeout, a kill) unwind like Ctrl-C: the run in progress has its
    process killed and its PostgreSQL database dropped, instead of both living on."""
    signal.signal(signal.SIGTERM, lambda _signal, _frame: sys.exit(128 + signal.SIGTERM))


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    _unwind_on_sigterm()
    if args.db != "sqlite" and not args.db.startswith(("postgresql", "postgres")):
        raise SystemExit("--db takes sqlite or a postgresql:// URL")
    workloads = tuple(w for w in args.workloads.split(",") if w)
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.peer == "dbos" and _version("dbos") is None:
        raise SystemExit("--peer dbos needs the benchmark extra: pip install -e '.[bench]'")
    plan = Plan(
        mode=args.mode,
        sizes=MODES[args.mode],
        db=args.db,
        synchronous=args.synchronous,
        peer=args.peer,
        workloads=workloads,
    )
    console = Console(stderr=True)
    reference_s = args.reference_seconds or (3.0 if args.mode == "full" else 1.5)
    if args.mode == "tiny":
        reference_s = args.reference_seconds or 0.2
    started = datetime.datetime.now(datetime.UTC)
    measured = run_plan(plan, console.print, reference_s=reference_s)
    meta: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "mode": plan.mode,
        "sizes": plan.sizes.to_json(),
        "db_kind": plan.db_kind,
        "synchronous": plan.synchronous,
        "peer": plan.peer,
        "versions": {
            "python": platform.python_version(),
            "stepstone": _version("stepstone"),
            "dbos": _version("dbos") if plan.peer else None,
            "sqlite": measured["physical"].get("sqlite_version"),
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "notes": plan.notes,
    }
    result = {"meta": meta, **measured}
    report.show(result, Console(width=None if sys.stdout.isatty() else 120))
    if args.json:
        report.write_json(result, args.json)
        console.print(f"wrote {args.json}")
    failed = any(w["errors"] for w in result["workloads"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
