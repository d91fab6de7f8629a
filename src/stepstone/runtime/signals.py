"""In-process wake-ups between the API side and the worker of one process.

Across processes the worker polls (SQLite) or listens (PostgreSQL); inside one process a
created instance, a sent event or a status change reaches the worker at once through this.
"""

from __future__ import annotations

import asyncio


class Notifier:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._changed: set[int] = set()
        self._work = False

    def work_available(self) -> None:
        """New or woken instances may be ready to claim."""
        self._work = True
        self._event.set()

    def instance_changed(self, pk: int) -> None:
        """A user changed an instance a worker may be running (pause, terminate, event)."""
        self._changed.add(pk)
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def take(self) -> tuple[set[int], bool]:
        """Clear the signal; return the instances that changed since the last call, and
        whether work may be ready to claim."""
        self._event.clear()
        changed, self._changed = self._changed, set()
        work, self._work = self._work, False
        return changed, work
