"""The readable table (Rich) and the JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

LABELS = {
    "workflows_per_s": "workflows/s",
    "steps_per_s": "steps/s",
    "steps_per_commit_rate": "steps/s ÷ raw commits/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "drain_s": "time to drain, s",
    "batch_instances_per_s": "batch create, instances/s",
    "batch_p50_ms": "batch request p50 ms",
    "batch_p99_ms": "batch request p99 ms",
    "single_instances_per_s": "single create, instances/s",
    "single_p50_ms": "single create p50 ms",
    "single_p99_ms": "single create p99 ms",
    "send_p50_ms": "event POST answered, p50 ms",
    "late_p50_ms": "wake-up lateness p50 ms",
    "late_p99_ms": "wake-up lateness p99 ms",
    "sleep_late_p50_ms": "from the sleep's deadline, p50 ms",
    "sleep_late_p99_ms": "from the sleep's deadline, p99 ms",
    "rss_asleep_mb": "RSS while asleep, MB",
    "rss_growth_mb": "RSS growth for the sleepers, MB",
    "rss_peak_mb": "RSS peak, MB",
    "rss_base_mb": "RSS before, MB",
    "all_asleep_at_once": "all asleep at once (1 = yes)",
    "elapsed_s": "whole run, s",
    "all_first_p50_ms": "list, first page p50 ms",
    "all_cursor_p50_ms": "list, cursor page p50 ms",
    "status_first_p50_ms": "status filter, first page p50 ms",
    "status_cursor_p50_ms": "status filter, cursor page p50 ms",
}


NEUTRAL = frozenset({"rss_base_mb", "all_asleep_at_once", "elapsed_s"})
"""Context, not a contest: no "better" verdict for these."""


def higher_is_better(metric: str) -> bool | None:
    if metric in NEUTRAL:
        return None
    if metric.endswith(("_per_s", "_rate")):
        return True
    if metric.endswith(("_ms", "_s", "_mb")):
        return False
    return None


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(result: dict[str, Any]) -> Table:
    meta = result["meta"]
    peer = meta.get("peer")
    title = (
        f"Stepstone{' vs ' + peer if peer else ''} — {meta['mode']} run, {meta['db_kind']}"
        f"{', synchronous=' + meta['synchronous'] if meta['db_kind'] == 'sqlite' else ''}"
        f" (medians of {meta['sizes']['repeats']} runs; timers {meta['sizes']['slow_repeats']})"
    )
    out = Table(title=title)
    out.add_column("workload")
    out.add_column("metric")
    out.add_column("Stepstone", justify="right")
    if peer:
        out.add_column(peer, justify="right")
        out.add_column(f"Stepstone/{peer}", justify="right")
        out.add_column("better", justify="center")
    for name, workload in result["workloads"].items():
        ours = workload["engines"].get("stepstone", {}).get("median", {})
        theirs = workload["engines"].get(peer, {}).get("median", {}) if peer else {}
        ratio = workload.get("ratio", {})
        first = True
        for metric, value in ours.items():
            row = [name if first else "", LABELS.get(metric, metric), _fmt(value)]
            first = False
            if peer:
                mine_better = ""
                r = ratio.get(metric)
                up = higher_is_better(metric)
                if r is not None and not math.isnan(r) and up is not None:
                    mine_better = "Stepstone" if (r > 1) == up else peer
                row += [_fmt(theirs.get(metric)), _fmt(r) if r else "-", mine_better]
            out.add_row(*row)
        for error in workload.get("errors", []):
            out.add_row(name, "[red]error[/red]", error.splitlines()[0][:80])
        out.add_section()
    return out


def physical_table(refs: dict[str, Any]) -> Table:
    out = Table(title="Physical references (this machine, this run)")
    out.add_column("reference")
    out.add_column("value", justify="right")
    for key, value in refs.items():
        out.add_row(key, value if isinstance(value, str) else _fmt(value))
    return out


def show(result: dict[str, Any], console: Console) -> None:
    console.print(physical_table(result["physical"]))
    console.print(table(result))
    for note in result["meta"].get("notes", []):
        console.print(f"note: {note}")


def write_json(result: dict[str, Any], path: Path) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(result), indent=2) + "\n")


def markdown(result: dict[str, Any]) -> str:
    """The same figures as a Markdown table (for RESULTS.md)."""
    peer = result["meta"].get("peer")
    head = ["workload", "metric", "Stepstone"] + ([peer, f"Stepstone/{peer}"] if peer else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, workload in result["workloads"].items():
        ours = workload["engines"].get("stepstone", {}).get("median", {})
        theirs = workload["engines"].get(peer, {}).get("median", {}) if peer else {}
        ratio = workload.get("ratio", {})
        for metric, value in ours.items():
            row = [name, LABELS.get(metric, metric), _fmt(value)]
            if peer:
                row += [_fmt(theirs.get(metric)), _fmt(ratio.get(metric))]
            lines.append("| " + " | ".join(row) + " |")
    refs = result["physical"]
    lines += ["", "| physical reference | value |", "|---|---|"]
    lines += [f"| {k} | {v if isinstance(v, str) else _fmt(v)} |" for k, v in refs.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        print(markdown(json.loads(Path(name).read_text())))
