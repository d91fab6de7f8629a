"""Drive one claimed instance: replay its history, run new steps, suspend or finish.

While the worker owns an instance its ``run`` coroutine stays alive, so replay happens only after
a crash, a takeover or a long wait. A wait (sleep, retry delay, event, pause) first holds the
coroutine for up to ``hold_ms``, if the worker's ``HoldBudget`` has room; if nothing but waits
is left after that, the instance is *evicted*: the coroutine is cancelled, the lease released,
and the earliest deadline committed as ``ready_at`` so a timer, an event or a resume brings it
back to any worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from stepstone.domain import jsonvalue
from stepstone.domain.errors import DeterminismError, StepstoneError, StoreUnavailableError
from stepstone.domain.records import Claim, Event, StepRecord, StepState
from stepstone.domain.status import InstanceStatus, runtime_sources
from stepstone.runtime.clock import Clock
from stepstone.runtime.graph_run import GraphWorkflow
from stepstone.runtime.graph_services import GraphServices
from stepstone.runtime.history import History
from stepstone.runtime.loader import VersionLoader
from stepstone.runtime.step import DurableStep, error_message, error_name, to_datetime
from stepstone.sdk.entrypoint import WorkflowEvent
from stepstone.sdk.errors import InstanceTerminatedError, StepFailedError
from stepstone.storage.base import LeaseLostError, Store

log = logging.getLogger(__name__)
T = TypeVar("T")
S = InstanceStatus


SHORT_WAIT_MS = 100
"""A wait this short keeps the instance shown as running."""
MAX_OFFERED = 16
"""Events a run keeps of those handed over as they were sent (mostly one; the rest is read)."""


class StoreFailedError(BaseException):
    """The database failed under a running instance. Not an ``Exception``, so the workflow's
    code cannot catch it and go on with a history that was not committed: the run stops, and
    the instance resumes from its committed steps once its lease lapses."""


async def _stored(call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreUnavailableError as exc:
        raise StoreFailedError(exc.message) from exc
    except StepstoneError:
        raise
    except Exception as exc:
        raise StoreFailedError(f"{type(exc).__name__}: {exc}") from exc


class ReplayEnd(BaseException):
    """Replay reached work not done yet while the instance only compensates (terminate with
    rollback): stop ``run`` here; the compensations of what was done come next."""


@dataclass(eq=False, slots=True)
class _Waiter:
    deadline: int | None
    event_type: str | None = None
    gate: bool = False
    """Held at a step boundary by a pause or a drain, not by the workflow's own wait."""
    woken: asyncio.Future[None] | None = None
    nudged: bool = False
    """Woken while it was looking (``busy``): it must look again before it sleeps."""
    busy: bool = False

    def wake(self) -> None:
        self.nudged = True
        if self.woken is not None and not self.woken.done():
            self.woken.set_result(None)


class HoldBudget:
    """How many waiting runs a worker may keep in memory at once (Temporal's sticky cache
    size, in effect). A held run resumes where it waits, with no claim, no history read and no
    replay (a timer's wake-up about a sixth cheaper, an event's a round trip shorter); but it
    costs about 11 KB while it waits, so the number is bounded, and a wait beyond the budget
    evicts its instance at once."""

    def __init__(self, limit: int, on_hold: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.held = 0
        self._on_hold = on_hold

    def take(self, pk: int) -> bool:
        """Room to hold instance ``pk``'s run?"""
        if self.held >= self.limit:
            return False
        self.held += 1
        if self._on_hold is not None:
            self._on_hold(pk)
        return True

    def give_back(self) -> None:
        self.held -= 1


class InstanceRun:
    """One instance, driven by one worker under one claim."""

    def __init__(
        self,
        claim: Claim,
        store: Store,
        clock: Clock,
        loader: VersionLoader,
        *,
        hold_ms: int = 1_000,
        env: Mapping[str, Any] | None = None,
        mocks: Mapping[str, Any] | None = None,
        services: GraphServices | None = None,
        changed: Callable[[int], None] | None = None,
        holds: HoldBudget | None = None,
    ) -> None:
        self.claim = claim
        self.holds = holds
        self.store = store
        self.services = services
        self.changed = changed
        """Tells the worker that another instance changed (a parent this run's end woke)."""
        self.clock = clock
        self.loader = loader
        self.hold_ms = hold_ms
        self.env = env or {}
        self.mocks = mocks or {}
        self.history: History
        self.pause_requested = claim.instance.status is S.WAITING_FOR_PAUSE
        self.draining = False
        self.rolling_back = claim.instance.status is S.ROLLING_BACK
        self.terminating = claim.instance.terminating
        self.stranded = False
        """Stopped by a database failure while still holding its lease."""
        self.resumes_at: int | None = None
        """Set when the run left memory with a timer: when the instance is ready again."""
        self._active = 0
        self._waiters: list[_Waiter] = []
        self._signal: asyncio.Future[None] | None = None
        """Resolved when the supervisor should look again."""
        self._seen: tuple[bool, bool, bool] = (False, self.pause_requested, False)
        """What the supervisor last looked at: (quiescent, pause requested, draining)."""
        self._marked_waiting = False
        self._claimed_for: int | None = None
        """The timer this run was claimed ahead of, if it was."""
        self._deferred: list[StepRecord] = []
        self._deferred_results = 0
        """Of ``_deferred``, how many are steps' results (``settle``)."""
        self._unsaved = 0
        """Steps' results not committed yet, whether still deferred or in a commit under way."""
        self._results_saved: asyncio.Future[None] | None = None
        """Resolved when a commit carrying results ends (made only when a step waits)."""
        self._taken: set[int] = set()
        """Events this run's waits took (their consumption may not be committed yet). One set,
        handed to the store's read and looked at when its answer comes: two waits reading at
        once see each other's take."""
        self._offered: list[Event] | None = None
        """Events handed over as they were sent, each the earliest of its type pending then."""

    @property
    def _log(self) -> logging.LoggerAdapter[logging.Logger]:
        """Made when something is logged: most runs log nothing, and a held run's memory is
        what bounds how many may be held."""
        instance = self.claim.instance
        return logging.LoggerAdapter(
            log, {"instance": instance.id, "workflow_id": instance.workflow_id}
        )

    # ------------------------------------------------------------ used by DurableStep
    async def save(self, record: StepRecord) -> None:
        """Commit ``record`` (with any deferred ones) before the workflow goes on."""
        self._deferred.append(record)
        await self._save_deferred()
        self.history.remember(record)

    def settle(self, record: StepRecord) -> None:
        """A step's result: committed with the instance's next commit, not on its own.

        That commit always comes before anything could depend on the result: before the next
        step's function runs (``commit_results``), before the run waits (the supervisor's
        move, or a save of its own) and with the instance's end. In between runs only the
        workflow's own code, which a replay runs again anyway. So a step followed by a sleep,
        a wait or the end costs one commit, not two; a step's result is never committed
        later than the next step starts, and never lost to a move a user's action refused.
        """
        self._deferred.append(record)
        self._deferred_results += 1
        self._unsaved += 1
        self.history.remember(record)

    async def commit_results(self) -> None:
        """Return once every step result settled so far is committed."""
        while self._unsaved:
            if self._deferred_results:
                await self._save_deferred()
                continue
            # The rest rides in commits other branches of the workflow are making: wait for
            # one to end, and look again.
            if self._results_saved is None:
                self._results_saved = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._results_saved)

    async def _save_deferred(self) -> None:
        records, results = self._take_deferred()
        try:
            await _stored(self.store.save_steps(self.claim, records))
        except BaseException:
            self._results_lost(results)
            raise
        self._results_committed(results)

    def _take_deferred(self) -> tuple[list[StepRecord], int]:
        """The deferred records for a commit, and how many of them are steps' results."""
        records, self._deferred = self._deferred, []
        results, self._deferred_results = self._deferred_results, 0
        return records, results

    def _results_committed(self, results: int) -> None:
        """A commit carrying ``results`` steps' results ended: tell the steps waiting."""
        if results:
            self._unsaved -= results
            if self._results_saved is not None:
                self._results_saved.set_result(None)
                self._results_saved = None

    def _results_lost(self, results: int) -> None:
        """It failed: the steps waiting for it stop, as the run does."""
        if results and self._results_saved is not None:
            self._results_saved.cancel()
            self._results_saved = None

    def defer(self, record: StepRecord) -> None:
        """Keep ``record`` for the instance's next commit instead of committing it now.

        For records whose loss a replay makes good by itself: a sleep that started or ended, a
        wait that took its event. Replay finds a sleep it has no record of as new, one past its
        deadline as ended, and a wait's event still pending, so nothing is lost if the worker
        dies first; and the next commit (a step's result, a status move, the eviction that lets
        the instance leave memory) always carries them.
        """
        self._deferred.append(record)
        self.history.remember(record)

    async def take_event(self, record: StepRecord) -> StepRecord | None:
        """Complete the wait ``record`` with the earliest pending event of its type that no
        other wait of this run took, or return None.

        Deferred like a sleep's end (``defer``): the record, and with it the event's
        consumption, commits with the instance's next commit. Until then the event stays
        pending, so if the run is lost first, its replay takes the very same event.
        """
        assert record.event_type is not None
        event = self._offered_event(record.event_type) or await _stored(
            self.store.pending_event(self.claim.instance.pk, record.event_type, self._taken)
        )
        if event is None:
            return None
        self._taken.add(event.seq)
        output = {
            "type": event.type,
            "payload": json.loads(event.payload),
            "timestamp": event.received_at,
        }
        done = replace(
            record,
            state=StepState.COMPLETE,
            ended_at=self.clock.now_ms(),
            output=json.dumps(output),
            event_seq=event.seq,
        )
        self.defer(done)
        return done

    def _offered_event(self, type: str) -> Event | None:
        """An event of ``type`` handed over as it was sent, if one is left. It was the earliest
        of its type pending when it arrived, and only this run's waits take this instance's
        events, so it still is unless one of them took it (then the store said: not first)."""
        if not self._offered:
            return None
        for event in self._offered:
            if event.type == type and event.seq not in self._taken:
                self._offered.remove(event)
                return event
        return None

    def activity_started(self) -> None:
        """An attempt starts running: an instance with one is never evicted. (A pair of
        calls, not a context manager: this is on every step's path.)"""
        self._active += 1
        self._touch()

    def activity_ended(self) -> None:
        self._active -= 1
        self._touch()

    def _touch(self) -> None:
        """Wake the supervisor if what it acts on changed (most step boundaries change
        nothing it cares about, and waking it for each would cost more than the step)."""
        if (self.quiescent, self.pause_requested, self.draining) != self._seen:
            self._poke()

    def _poke(self, _done: object = None) -> None:
        if self._signal is not None and not self._signal.done():
            self._signal.set_result(None)

    async def wait(
        self,
        deadline: int | None,
        satisfied: Callable[[], Awaitable[bool]] | None = None,
        *,
        event_type: str | None = None,
        gate: bool = False,
    ) -> bool:
        """Wait until ``deadline`` or until ``satisfied()`` (checked on every wake-up) is true.

        ``event_type`` names the event a wait is for, so that eviction can wake the instance
        at once if such an event arrived in the meantime.
        """
        waiter = _Waiter(deadline, event_type, gate)
        self._waiters.append(waiter)
        self._touch()
        try:
            while True:
                waiter.nudged = False
                if satisfied is not None:
                    waiter.busy = True
                    self._touch()
                    try:
                        if await satisfied():
                            return True
                    finally:
                        waiter.busy = False
                        self._touch()
                if deadline is not None and self.clock.now_ms() >= deadline:
                    return False
                if waiter.nudged:
                    continue
                waiter.woken = asyncio.get_running_loop().create_future()
                timer = None if deadline is None else self.clock.call_at(deadline, waiter.wake)
                try:
                    await waiter.woken
                finally:
                    if timer is not None:
                        timer.cancel()
        finally:
            self._waiters.remove(waiter)
            self._touch()

    def check_new_work(self) -> None:
        """A step is about to do new work: not allowed while terminating with rollback."""
        if self.terminating:
            raise ReplayEnd

    async def gate(self) -> None:
        """A step boundary: hold here while a pause is requested or the worker drains."""
        while self.pause_requested or self.draining:
            await self.wait(None, gate=True)

    # ------------------------------------------------------------ used by the worker
    def wake(self) -> None:
        """Something changed (an event arrived): waiters look again."""
        for waiter in self._waiters:
            waiter.wake()

    def offer(self, event: Event | None) -> None:
        """An event was sent to the instance (``event``, if it was the earliest of its type
        pending): waiters look again, and a wait for its type takes it without a read."""
        if event is not None:
            if self._offered is None:
                self._offered = []
            elif len(self._offered) >= MAX_OFFERED:
                del self._offered[0]  # a wait for it reads it from the store instead
            self._offered.append(event)
        self.wake()

    def drain(self) -> None:
        """The worker is stopping: let running attempts finish, then hand the instance back."""
        self.draining = True
        self._touch()

    def request_pause(self, requested: bool) -> None:
        if requested != self.pause_requested:
            self.pause_requested = requested
            self._touch()
            self.wake()

    @property
    def quiescent(self) -> bool:
        """Nothing runs: every branch of ``run`` is blocked in a wait."""
        return self._active == 0 and bool(self._waiters) and not any(w.busy for w in self._waiters)

    # ------------------------------------------------------------ driving
    async def drive(self) -> None:
        """Run the instance until it finishes, suspends, or the lease is lost."""
        try:
            await self._drive()
        except LeaseLostError:
            self._log.info("lease lost; another owner or a user action took the instance over")
        except StoreFailedError as exc:
            self.stranded = True
            self._log.warning(
                "database error under the instance (%s); it resumes from its committed steps "
                "as soon as the database is back",
                exc,
            )

    async def _drive(self) -> None:
        instance = self.claim.instance
        now = self.clock.now_ms()
        if instance.status is S.WAITING_FOR_PAUSE:
            await self._evict_paused()
            return
        if instance.status in (S.QUEUED, S.WAITING):
            fields = {} if instance.started_at else {"started_at": now}
            if not await self._move(S.RUNNING, ready_at=now, **fields):
                return
        try:
            version = self.loader.known(instance.version_id) or await _stored(
                self.store.get_version(instance.version_id)
            )
            if version is None:
                raise StepstoneError(f"version {instance.version_id} of this instance is gone")
            cls = self.loader.load(version)
            records = self.claim.steps
            if records is None:
                records = tuple(await _stored(self.store.load_steps(instance.pk)))
            self.history = History(records, version.max_steps)
        except StepstoneError as exc:
            await self._finish(S.ERRORED, error=exc)
            return
        if instance.ready_at is not None and instance.ready_at > now:
            self._claimed_for = instance.ready_at
        step = DurableStep(self)
        body = asyncio.create_task(self._body(cls, step), name=f"run {instance.id}")
        try:
            await self._supervise(body)
        finally:
            if not body.done():
                body.cancel()
                with suppress(asyncio.CancelledError, LeaseLostError):
                    await body
        if not body.cancelled():
            body.result()

    async def _supervise(self, body: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        body.add_done_callback(self._poke)
        while not body.done():
            self._signal = loop.create_future()
            self._seen = (self.quiescent, self.pause_requested, self.draining)
            if self.quiescent:
                if self.pause_requested and self._active == 0:
                    await self._stop(body)
                    await self._evict_paused()
                    return
                hold_until = self.clock.now_ms() + (0 if self.draining else self.hold_ms)
                early = self._claimed_early()
                if not self._worth_holding(hold_until) or not (early or self._take_hold()):
                    # Nothing can wake it in memory before its timer (or no room to keep it):
                    # leave at once, in one move, and free the slot for instances that are ready.
                    ready_at, wake_for = self._ready_at(), self._event_types
                    await self._stop(body)
                    await self._evict(ready_at, wake_for)
                    return
                timer = None
                try:
                    if not early and self._worth_marking():
                        await self._mark(S.WAITING, self._ready_at())
                    elif self._deferred_results:
                        await self._save_deferred()  # nothing else commits before it waits
                    timer = self.clock.call_at(hold_until, self._poke)
                    await self._signal
                finally:
                    if timer is not None:
                        timer.cancel()
                    if not early:
                        self._give_hold_back()
                if not body.done() and self.quiescent and self.clock.now_ms() >= hold_until:
                    ready_at, wake_for = self._ready_at(), self._event_types
                    await self._stop(body)
                    await self._evict(ready_at, wake_for)
                    return
            else:
                if self._marked_waiting and self._active > 0:
                    await self._mark(S.RUNNING, self.clock.now_ms())
                await self._signal

    def _worth_marking(self) -> bool:
        """Whether to show the held instance as waiting: not for a timer about to fire (an
        instance claimed just before its timer, say), where the two moves, to waiting and
        back to running, would cost more than the wait."""
        if self._marked_waiting or self.draining or self.rolling_back:
            return False
        ready_at = self._ready_at()
        return ready_at is None or ready_at - self.clock.now_ms() > SHORT_WAIT_MS

    def _worth_holding(self, hold_until: int) -> bool:
        """Whether to keep the waiting coroutine in memory until ``hold_until``: only if an
        event may arrive for it, or its timer fires by then (a later timer would find it
        evicted anyway, and replay costs less than a held slot)."""
        if self.draining:
            return False
        if self._event_types:
            return True
        ready_at = self._ready_at()
        return ready_at is not None and ready_at <= hold_until

    def _claimed_early(self) -> bool:
        """Waiting for the timer it was claimed ahead of: about to run, not held (it counts
        as running, and no budget)."""
        if self._claimed_for is None:
            return False
        if self.clock.now_ms() >= self._claimed_for:
            self._claimed_for = None  # that timer has fired: later waits are waits like any
            return False
        ready_at = self._ready_at()
        return ready_at is not None and ready_at <= self._claimed_for

    def _take_hold(self) -> bool:
        return self.holds is None or self.holds.take(self.claim.instance.pk)

    def _give_hold_back(self) -> None:
        if self.holds is not None:
            self.holds.give_back()

    @property
    def _event_types(self) -> frozenset[str]:
        return frozenset(w.event_type for w in self._waiters if w.event_type is not None)

    def _ready_at(self) -> int | None:
        """When the instance should run next if it left memory now."""
        if self.pause_requested:
            return None
        if any(w.gate for w in self._waiters):
            return self.clock.now_ms()  # held only by a drain: any worker may go on at once
        deadlines = [w.deadline for w in self._waiters if w.deadline is not None]
        return min(deadlines) if deadlines else None

    async def _move(self, target: InstanceStatus, **changes: Any) -> bool:
        """Move the instance by the runtime's own transition table (committing the deferred
        records with it); False if it is elsewhere."""
        steps, results = self._take_deferred()
        try:
            moved = await _stored(
                self.store.move(
                    self.claim,
                    expected=runtime_sources(target),
                    target=target,
                    now=self.clock.now_ms(),
                    steps=steps,
                    **changes,
                )
            )
            if not moved and results:
                # Refused (a user paused the instance meanwhile, say): steps' results still
                # commit, fenced by the lease alone, as they would have on their own.
                await _stored(self.store.save_steps(self.claim, steps))
        except BaseException:
            self._results_lost(results)
            raise
        self._results_committed(results)
        return moved

    async def _mark(self, status: InstanceStatus, ready_at: int | None) -> None:
        if await self._move(status, ready_at=ready_at, wake_for=self._event_types):
            self._marked_waiting = status is S.WAITING

    async def _stop(self, body: asyncio.Task[None]) -> None:
        body.cancel()
        with suppress(asyncio.CancelledError):
            await body

    async def _evict(self, ready_at: int | None, wake_for: frozenset[str]) -> None:
        # A rollback waiting for its retry stays rollingBack; anything else shows as waiting.
        target = S.ROLLING_BACK if self.rolling_back else S.WAITING
        if await self._move(target, ready_at=ready_at, release=True, wake_for=wake_for):
            self.resumes_at = ready_at
        else:
            await self._evict_paused()

    async def _evict_paused(self) -> None:
        await self._move(S.PAUSED, ready_at=None, release=True)

    async def _body(self, cls: type, step: DurableStep) -> None:
        instance = self.claim.instance
        event = WorkflowEvent(
            payload=jsonvalue.decode(instance.params),
            timestamp=to_datetime(instance.created_at),
            instance_id=instance.id,
        )
        try:
            workflow = cls(self.env)
            if isinstance(workflow, GraphWorkflow):
                if self.services is None:
                    self.services = GraphServices(self.store, self.loader, self.clock)
                workflow.attach(self.services, instance)
            result = await workflow.run(event, step)
            if self.terminating:
                raise ReplayEnd
            if getattr(cls, "strict_history", True):
                self.history.check_all_reached()
            output = jsonvalue.encode(result, what="the workflow's return value")
        except ReplayEnd:
            terminated = InstanceTerminatedError("the instance was terminated with rollback")
            outcome = await self._compensate(step, terminated)
            await self._finish(S.TERMINATED, **outcome)
            return
        except DeterminismError as exc:
            self._log.error("determinism error: %s", exc.message)
            await self._finish(S.ERRORED, error=exc)
            return
        except Exception as exc:
            if self.history.divergence is not None:  # the code caught it; it still stands
                await self._finish(S.ERRORED, error=self.history.divergence)
                return
            if self.terminating:  # the replay ended in a failure: terminate wins all the same
                outcome = await self._compensate(step, exc)
                await self._finish(S.TERMINATED, **outcome)
                return
            await self._finish(S.ERRORED, error=exc, **await self._compensate(step, exc))
            return
        await self._finish(S.COMPLETE, output=output)

    async def _compensate(self, step: DurableStep, exc: BaseException) -> dict[str, Any]:
        """Run the completed steps' compensations newest first, as durable rollback steps;
        return the outcome fields (nothing when there was nothing to undo)."""
        if not step.compensations:
            return {}
        self.rolling_back = True
        await self._move(S.ROLLING_BACK)
        first_error: BaseException | None = None
        for comp in sorted(step.compensations, key=lambda c: c.seq, reverse=True):
            try:
                await step.run_compensation(comp, exc)
            except Exception as rb_exc:
                first_error = first_error or rb_exc
        outcome: dict[str, Any] = {"rollback_outcome": "failed" if first_error else "complete"}
        if first_error is not None:
            inner = first_error.__cause__ or first_error
            outcome.update(
                rollback_error_name=_name_of(first_error, inner),
                rollback_error_message=_message_of(first_error, inner),
            )
        return outcome

    async def _finish(
        self,
        status: InstanceStatus,
        *,
        output: str | None = None,
        error: BaseException | None = None,
        **fields: Any,
    ) -> None:
        if error is not None:
            fields.update(
                error_name=_name_of(error, error.__cause__ or error),
                error_message=_message_of(error, error.__cause__ or error),
            )
            self._log.info(
                "instance errored: %s: %s", fields["error_name"], fields["error_message"]
            )
        instance = self.claim.instance
        keep = (
            instance.success_retention_ms if status is S.COMPLETE else instance.error_retention_ms
        )
        if keep is not None:
            fields["purge_at"] = self.clock.now_ms() + keep
        if not await self._move(
            status,
            ready_at=None,
            release=True,
            output=output,
            ended_at=self.clock.now_ms(),
            **fields,
        ):
            raise LeaseLostError(self.claim.instance.pk)
        if instance.parent_pk is not None and self.changed is not None:
            self.changed(instance.parent_pk)  # the move told the parent; wake it if held here


def _name_of(error: BaseException, cause: BaseException) -> str:
    if isinstance(error, StepFailedError):
        return error.error_name
    return error_name(cause if cause is not error else error)


def _message_of(error: BaseException, cause: BaseException) -> str:
    if isinstance(error, StepFailedError):
        return error.message
    return error_message(error)
