"""Group commit: step results that arrive while a commit is in flight share the next one.

One transaction per step caps a busy worker at the database's commit rate; with many instances
running, their step results queue up behind the commit in flight and then go together, so a
commit carries as many results as arrived meanwhile, and nobody waits longer than one commit.
Each caller still learns its own outcome: a result whose lease was lost fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from stepstone.domain.errors import StoreUnavailableError

T = TypeVar("T")
Outcomes = list[BaseException | None]


class Batcher(Generic[T]):
    """Runs ``run_batch`` on everything submitted while the previous batch was committing."""

    def __init__(self, run_batch: Callable[[Sequence[T]], Awaitable[Outcomes]]) -> None:
        self._run_batch = run_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Return once ``item`` is committed; raise what committing it raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="stepstone group commit")
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            items = [item for item, _ in batch]
            try:
                outcomes = await self._run_batch(items)
            except StoreUnavailableError as exc:
                outcomes = [exc] * len(batch)
            except Exception as exc:
                # One bad item must not fail the others: commit them one by one instead.
                outcomes = [exc] if len(batch) == 1 else await self._one_by_one(items)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller was cancelled meanwhile
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    async def _one_by_one(self, items: Sequence[T]) -> Outcomes:
        outcomes: Outcomes = []
        for item in items:
            try:
                outcomes.extend(await self._run_batch([item]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
