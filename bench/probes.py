"""Clocks and memory readings shared by both engines' harnesses."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench.stats import latency


def now_ms() -> float:
    """CLOCK_MONOTONIC in ms: the same clock in every process of the machine."""
    return time.monotonic() * 1000


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples this process's RSS every ``every_s`` while running; keeps (time ms, MB)."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.samples.append((now_ms(), rss_mb()))
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="bench rss sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self.samples.append((now_ms(), rss_mb()))

    def peak(self, start_ms: float | None = None, end_ms: float | None = None) -> float:
        window = [
            mb
            for t, mb in self.samples
            if (start_ms is None or t >= start_ms) and (end_ms is None or t <= end_ms)
        ]
        return max(window) if window else max(mb for _t, mb in self.samples)


class EndTracker:
    """Futures resolved, with the time, when an instance's run next ends."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, list[asyncio.Future[float]]] = defaultdict(list)

    def expect(self, instance_id: str) -> asyncio.Future[float]:
        """A future for the next end of ``instance_id``'s run; register it before starting."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[instance_id].append(future)
        return future

    def ended(self, instance_id: str) -> None:
        when = now_ms()
        for future in self._waiters.pop(instance_id, []):
            if not future.done():
                future.set_result(when)


def lateness(outputs: list[dict[str, float]]) -> list[float]:
    """How late each wake-up was: after - before - the sleep, in ms."""
    return [o["after"] - o["before"] - o["ms"] for o in outputs]


def sleeping_window(outputs: list[dict[str, float]]) -> tuple[float, float] | None:
    """From the last instance to fall asleep to the first to wake up, if they overlap."""
    start = max(o["before"] for o in outputs)
    end = min(o["after"] for o in outputs)
    return (start, end) if start < end else None


def timer_figures(
    outputs: list[Any], sampler: RssSampler, base: float, elapsed_s: float
) -> dict[str, float]:
    """Lateness p50/p99, RSS while all slept (else the peak), for either engine."""
    late = lateness(outputs)
    window = sleeping_window(outputs)
    asleep = sampler.peak(*window) if window else sampler.peak()
    return {
        **latency("late_", late),
        "rss_asleep_mb": asleep,
        "rss_growth_mb": asleep - base,
        "rss_peak_mb": sampler.peak(),
        "rss_base_mb": base,
        "all_asleep_at_once": 1.0 if window else 0.0,
        "elapsed_s": elapsed_s,
    }
