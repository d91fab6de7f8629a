"""Time, injected: production uses the wall clock; tests move a fake one instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...

    async def sleep_until(self, deadline_ms: int) -> None:
        """Return once ``now_ms() >= deadline_ms``."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, deadline_ms: int) -> None:
        # A timer, not a poll: asyncio.sleep may return a little early by the wall clock.
        while (remaining := deadline_ms - self.now_ms()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining / 1000)


class FakeClock:
    """A clock that only moves when told to; sleepers wake when it passes their deadline."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._moved = asyncio.Condition()

    def now_ms(self) -> int:
        return self._now

    async def sleep_until(self, deadline_ms: int) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= deadline_ms)

    async def advance(self, ms: int) -> None:
        await self.set(self._now + ms)

    async def set(self, now_ms: int) -> None:
        async with self._moved:
            self._now = max(self._now, now_ms)
            self._moved.notify_all()
