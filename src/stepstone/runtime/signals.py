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

    def work_available(self) -> None:
        """New or woken instances may be ready to claim."""
        self._event.set()

    def instance_changed(self, pk: int) -> None:
        """A user changed an instance a worker may be running (pause, terminate, event)."""
        self._changed.add(pk)
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def take(self) -> set[int]:
        """Clear the signal and return the instances that changed since the last call."""
        self._event.clear()
        changed, self._changed = self._changed, set()
        return changed
