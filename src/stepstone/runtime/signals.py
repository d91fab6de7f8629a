"""In-process wake-ups between the API side and the worker of one process.

Across processes the worker polls (SQLite) or listens (PostgreSQL); inside one process a
created instance, a sent event or a status change reaches the worker at once through this, and
a worker with free slots may take instances as they are created (``Taker``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from stepstone.domain.records import Claim, Event


class Taker(Protocol):
    """A worker in this process that starts new instances the moment they are created, as
    DBOS and Temporal's eager start do: no claim, no wait for the worker's next look."""

    id: str
    """The lease owner the new instances are created under."""

    def room(self) -> int:
        """How many new instances it would start now: 0 while it is full, stopping, or may
        have older work waiting in the database (new instances must not overtake it)."""
        ...

    def lease_ms(self) -> int: ...

    def take(self, claims: Sequence[Claim]) -> None:
        """Start these instances, created running under this worker's lease."""
        ...

    def hand_event(self, pk: int, event: Event | None) -> bool:
        """Wake instance ``pk``'s waits at once if this worker runs it, offering them
        ``event`` (the earliest of its type pending, when given); False if it does not."""
        ...


class Notifier:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._changed: set[int] = set()
        self._sent: set[int] = set()
        self._work = False
        self.taker: Taker | None = None
        """The worker of this process while it runs, if it takes instances as they are made."""

    def work_available(self) -> None:
        """New or woken instances may be ready to claim."""
        self._work = True
        self._event.set()

    def instance_changed(self, pk: int) -> None:
        """A user changed an instance a worker may be running (pause, terminate, event)."""
        self._changed.add(pk)
        self._event.set()

    def event_sent(self, pk: int, event: Event | None = None) -> None:
        """An event was sent to instance ``pk``: a run of it held in memory looks for it. Nothing
        else about the instance changed, so the worker need not read what did.

        ``event``, when it was the only one of its type pending, is handed to the run if the
        taker runs it, which then takes it without reading it back: on a database server that
        read is a round trip on the event's way to the code waiting for it."""
        if self.taker is not None and self.taker.hand_event(pk, event):
            return
        self._sent.add(pk)
        self._event.set()

    def look_again(self) -> None:
        """Nothing new to claim, but the worker should choose when to look next again."""
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def take(self) -> tuple[set[int], set[int], bool]:
        """Clear the signal; return the instances that changed and those sent events since the
        last call, and whether work may be ready to claim."""
        self._event.clear()
        changed, self._changed = self._changed, set()
        sent, self._sent = self._sent, set()
        work, self._work = self._work, False
        return changed, sent, work
