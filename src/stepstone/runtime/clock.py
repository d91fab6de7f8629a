"""Time, injected: production uses the wall clock; tests move a fake one instead of sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...

    async def sleep_until(self, deadline_ms: int) -> None:
        """Return once ``now_ms() >= deadline_ms``."""
        ...

    def call_at(self, deadline_ms: int, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` on the running loop once ``now_ms() >= deadline_ms`` (a timer,
        not a task: a wait that also ends another way costs no task to cancel)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, deadline_ms: int) -> None:
        # A timer, not a poll: asyncio.sleep may return a little early by the wall clock.
        while (remaining := deadline_ms - self.now_ms()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining / 1000)

    def call_at(self, deadline_ms: int, callback: Callable[[], None]) -> Timer:
        return _WallTimer(self, deadline_ms, callback)


class _WallTimer:
    """The loop's timers run on the monotonic clock: re-armed if the wall clock is behind."""

    __slots__ = ("_callback", "_clock", "_deadline", "_handle", "_loop")

    def __init__(self, clock: SystemClock, deadline_ms: int, callback: Callable[[], None]):
        self._clock = clock
        self._deadline = deadline_ms
        self._callback = callback
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(self._remaining() / 1000, self._fire)

    def _remaining(self) -> int:
        return max(0, self._deadline - self._clock.now_ms())

    def _fire(self) -> None:
        remaining = self._remaining()
        if remaining > 0:
            self._handle = self._loop.call_later(remaining / 1000, self._fire)
            return
        self._callback()

    def cancel(self) -> None:
        self._handle.cancel()


class FakeClock:
    """A clock that only moves when told to; sleepers wake when it passes their deadline."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._moved = asyncio.Condition()
        self._timers: list[tuple[int, int, _FakeTimer]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._now

    async def sleep_until(self, deadline_ms: int) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= deadline_ms)

    def call_at(self, deadline_ms: int, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(callback)
        if deadline_ms <= self._now:
            asyncio.get_running_loop().call_soon(timer.fire)
        else:
            heapq.heappush(self._timers, (deadline_ms, next(self._order), timer))
        return timer

    async def advance(self, ms: int) -> None:
        await self.set(self._now + ms)

    async def set(self, now_ms: int) -> None:
        async with self._moved:
            self._now = max(self._now, now_ms)
            while self._timers and self._timers[0][0] <= self._now:
                heapq.heappop(self._timers)[2].fire()
            self._moved.notify_all()


class _FakeTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback

    def fire(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def cancel(self) -> None:
        self._callback = None
