"""Percentiles and medians, without numpy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def latency(prefix: str, samples_ms: Sequence[float]) -> dict[str, float]:
    """``{prefix}p50_ms`` and ``{prefix}p99_ms`` of ``samples_ms``."""
    return {
        f"{prefix}p50_ms": percentile(samples_ms, 50),
        f"{prefix}p99_ms": percentile(samples_ms, 99),
    }
