"""The claim loop: take ready instances under a lease, drive each in a task, keep leases alive."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any

from stepstone.domain.errors import StoreUnavailableError, ValidationError
from stepstone.domain.records import Claim, Event
from stepstone.domain.status import IN_PROGRESS, ON_CLAIM, RUNNABLE, InstanceStatus
from stepstone.engine.schedules import fire_due
from stepstone.runtime.clock import Clock, FakeClock, SystemClock
from stepstone.runtime.executor import HoldBudget, InstanceRun
from stepstone.runtime.graph_services import GraphServices
from stepstone.runtime.loader import VersionLoader
from stepstone.runtime.signals import Notifier
from stepstone.storage.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    lease_ms: int = 30_000
    """A worker that stops renewing loses its instances this long after its last renewal."""
    heartbeat_ms: int = 5_000
    poll_ms: int = 500
    """Longest pause between looks at the database when nothing signals new work."""
    max_concurrency: int = 1_000
    new_concurrency: int = 200
    """Of those, at most this many instances that had not started yet (new ones) at once: the
    rest is kept for instances in progress (a timer that fired, an event, a retry), so that a
    flood of new instances never holds up work that is due. New instances wait in the queue."""
    claim_batch: int = 100
    hold_ms: int = 5_000
    """How long a waiting instance stays in memory before it is evicted."""
    hold_max: int = 3_000
    """At most this many waiting instances stay in memory at once (see ``HoldBudget``); they
    do not count against ``max_concurrency``."""
    claim_ahead_ms: int = 500
    """Instances whose timer fires within this are claimed together, early, and wait in
    memory: timers close together cost one claim, and replay happens before they fire."""
    drain_ms: int = 10_000
    """On stop, how long running attempts may take to finish before they are cancelled."""
    purge_every_ms: int = 60_000
    """How often to delete finished instances past their retention."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        """Read each setting from ``STEPSTONE_<NAME>`` (``STEPSTONE_LEASE_MS``, ...)."""
        values: dict[str, int] = {}
        for name in (f.name for f in fields(cls)):
            raw = env.get(f"STEPSTONE_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValidationError(
                    f"STEPSTONE_{name.upper()} must be a whole number, not {raw!r}"
                ) from None
            if values[name] < 0:
                raise ValidationError(f"STEPSTONE_{name.upper()} must not be negative")
        settings = cls(**values)
        if settings.heartbeat_ms >= settings.lease_ms:
            raise ValidationError("the heartbeat must be shorter than the lease")
        return settings


def _freeze_what_lives_now() -> None:
    """Move every object alive at start (modules, the application's setup) out of the cyclic
    garbage collector's sight: its full collections walk all live objects, and with SQLAlchemy
    and the rest loaded that walk paused the worker for long enough to double timer lateness
    (10,000 sleepers: wake-up lateness p99 150-200 ms without, about 65 ms with). What is
    frozen is never collected; it was going to live as long as the process anyway.

    And collect the youngest generation after 10,000 allocations rather than 700: every
    instance run allocates hundreds of objects, nearly all freed by reference counting, and
    at the default the collector ran thousands of times a second (about a tenth of the
    worker's time with 10,000 sleepers waking)."""
    gc.collect()
    gc.freeze()
    _threshold, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


GC_YOUNG_THRESHOLD = 10_000


def _is_new(claim: Claim) -> bool:
    """Nothing done yet: a new instance (or one restarted afresh)."""
    return not claim.steps


def new_worker_id() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs instances from one store. Several workers, in any processes, may share a store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        loader: VersionLoader | None = None,
        notifier: Notifier | None = None,
        settings: WorkerSettings | None = None,
        env: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
        mocks: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.loader = loader or VersionLoader()
        self.notifier = notifier or Notifier()
        self.settings = settings or WorkerSettings()
        self.env = env or {}
        self.mocks = mocks or {}
        """Step name -> result (or exception to raise) used instead of running the step."""
        self.id = worker_id or new_worker_id()
        self._runs: dict[int, tuple[InstanceRun, asyncio.Task[None]]] = {}
        self._checked_at = 0
        self._stranded: list[Claim] = []
        """Runs a database failure stopped; their leases go back once the database answers."""
        self._purged_at = 0
        self._cron_at = 0
        self.services = GraphServices(
            store, self.loader, self.clock, created=self.notifier.work_available
        )
        """What graph runs' steps reach outside the run (jobs, child runs)."""
        self._lapsed_at = -(10**15)
        self._look_at: int | None = None
        """When to look for work next though nothing signals (``None``: now)."""
        self._look_floor: int | None = None
        """A time ``_look_at`` must not be later than (a run left memory until then)."""
        self._backlog = True
        """The last claim took all the worker had room for: more may be ready in the database.
        While so, a slot that frees claims again, and new instances are not started eagerly."""
        self._new: set[int] = set()
        """The runs of instances that had not started when this worker took them."""
        self._holds = HoldBudget(self.settings.hold_max, on_hold=self._held)
        self._accepting = False
        """Running, not stopping: new instances may be started here as they are created."""

    @property
    def running(self) -> int:
        return len(self._runs)

    @property
    def active(self) -> int:
        """Runs that count against ``max_concurrency``: all but the held waits."""
        return len(self._runs) - self._holds.held

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and drive instances until ``stop`` is set; then hand everything back."""
        log.info("worker %s started", self.id)
        loop = asyncio.get_running_loop()
        _freeze_what_lives_now()

        def signalled(pk: int | None) -> None:  # called on the listener's thread
            loop.call_soon_threadsafe(self._signalled, pk)

        stop_listening = self.store.listen(signalled)
        heartbeat = asyncio.create_task(self._heartbeat(stop), name=f"heartbeat {self.id}")
        failures = 0
        self._accepting = True
        if self.notifier.taker is None:
            self.notifier.taker = self
        try:
            while not stop.is_set():
                try:
                    await self._tick()
                    if failures:
                        log.warning(
                            "the database is reachable again; worker %s carries on", self.id
                        )
                    failures = 0
                except StoreUnavailableError as exc:
                    # A restarting database or a dropped connection: say so, back off, carry on;
                    # never crash-loop.
                    failures += 1
                    delay = min(0.1 * 2**failures, 5.0)
                    log.warning("%s; worker %s retries in %.1f s", exc.message, self.id, delay)
                    with suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                await self._idle(stop)
                if heartbeat.done() and not stop.is_set():
                    heartbeat.result()  # a dead heartbeat stops the worker loudly
                    raise RuntimeError("the heartbeat task ended")
        finally:
            self._accepting = False
            if self.notifier.taker is self:
                self.notifier.taker = None
            stop_listening()
            heartbeat.cancel()
            with suppress(asyncio.CancelledError):
                await heartbeat
            await self._hand_back()
            await self.services.close()
            log.info("worker %s stopped", self.id)

    def _signalled(self, pk: int | None) -> None:
        """Another process created work or changed instance ``pk``."""
        if pk is not None:
            self.notifier.instance_changed(pk)
        self.notifier.work_available()

    async def _tick(self) -> None:
        """One look at the database: user changes, cron ticks, retention, new work."""
        if self._stranded:
            stranded, self._stranded = self._stranded, []
            await self.store.release(stranded)
        changed, sent, work = self.notifier.take()
        changed &= self._runs.keys()
        for pk in changed | (sent & self._runs.keys()):
            # Let the waits look at once; for a change, the refresh below reads what changed (a
            # pause, a terminate: those the waits see as well). An event changes nothing else.
            self._runs[pk][0].wake()
        stale = self.clock.now_ms() - self._checked_at >= self.settings.poll_ms
        if changed or stale:
            await self.refresh(renew=False)
        await self._cron()
        await self._purge()
        # Claim when told of work, or when the time chosen for the next look has come; a
        # tick for a change in a run this worker holds (an event, a pause) claims nothing.
        if work or self._look_at is None or self.clock.now_ms() >= self._look_at:
            await self._claim()
            self._look_at = None

    async def _idle(self, stop: asyncio.Event) -> None:
        if self._look_at is None:
            self._look_at = await self._next_look()
        if self._look_floor is not None:
            self._look_at = min(self._look_at, self._look_floor)
            self._look_floor = None
        until = self._look_at
        waits = [
            asyncio.ensure_future(self.notifier.wait()),
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self.clock.sleep_until(until)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _next_look(self) -> int:
        """When to look for work if nothing signals: the next timer, or a poll interval."""
        now = self.clock.now_ms()
        until = now + self.settings.poll_ms
        if self.active < self.settings.max_concurrency:
            wakeup = await self.store.next_wakeup(now)
            if wakeup is not None and wakeup <= now:
                # Only a cron tick can be already due: the next cron look starts it.
                wakeup = self._cron_at + self.settings.poll_ms
            if wakeup is not None:
                # Claim what is due within claim_ahead_ms together, a little early: the runs
                # replay meanwhile and continue in memory exactly when their timers fire.
                until = min(until, wakeup - self.settings.claim_ahead_ms)
        return until

    async def _cron(self) -> None:
        """Start due cron instances; at most once a poll interval, so a busy loop (woken by
        every finished instance) does not read the schedules each time. A tick may thus start
        up to ``poll_ms`` late; its ``scheduledTime`` stays exact."""
        now = self.clock.now_ms()
        if now - self._cron_at < self.settings.poll_ms:
            return
        self._cron_at = now
        await fire_due(self.store, self.clock, self.notifier)

    async def _purge(self) -> None:
        """Now and then, delete finished instances whose retention has run out."""
        now = self.clock.now_ms()
        if now - self._purged_at < self.settings.purge_every_ms:
            return
        self._purged_at = now
        purged = await self.store.purge(now, 1_000)
        if purged:
            log.info("purged %d instances past their retention", purged)

    async def _claim(self) -> int:
        """Claim batches until the worker is full or a batch comes back short."""
        claimed = 0
        while (room := self.settings.max_concurrency - self.active) > 0:
            batch = min(room, self.settings.claim_batch)
            new_room = self._new_room()
            now = self.clock.now_ms()
            # Leases of dead workers run out in lease_ms; a look once a poll interval is enough.
            lapsed = now - self._lapsed_at >= self.settings.poll_ms
            if lapsed:
                self._lapsed_at = now
            claims = await self.store.claim(
                self.id,
                now,
                self.settings.lease_ms,
                batch,
                RUNNABLE,
                start=ON_CLAIM,
                first=IN_PROGRESS,
                lapsed=lapsed,
                ahead_ms=self.settings.claim_ahead_ms,
                new_limit=new_room,
            )
            for claim in claims:
                self._start(claim, self.settings.hold_ms)
            claimed += len(claims)
            if len(claims) < batch:
                # Short: nothing more is ready, unless the cap on new ones held some back.
                taken_new = sum(1 for claim in claims if _is_new(claim))
                self._backlog = new_room < batch and taken_new >= new_room
                if self._backlog and self._new_room() > new_room - taken_new:
                    # New runs ended (or began to wait) while the claim ran: their ends saw no
                    # backlog to announce, so announce it for them (the next look takes it).
                    self.notifier.work_available()
                break
        else:
            self._backlog = True  # full: what else is ready waits for a free slot
        return claimed

    def _start(self, claim: Claim, hold_ms: int) -> asyncio.Task[None]:
        run = InstanceRun(
            claim,
            self.store,
            self.clock,
            self.loader,
            hold_ms=hold_ms,
            env=self.env,
            mocks=self.mocks,
            services=self.services,
            changed=self._signalled,
            holds=self._holds,
        )
        task = asyncio.create_task(run.drive(), name=f"instance {claim.instance.id}")
        self._runs[claim.instance.pk] = (run, task)
        if _is_new(claim):
            self._new.add(claim.instance.pk)
        task.add_done_callback(functools.partial(self._done, claim.instance.pk))
        return task

    def _done(self, pk: int, task: asyncio.Task[None]) -> None:
        entry = self._runs.get(pk)
        if entry is not None and entry[1] is task:
            del self._runs[pk]
            self._new.discard(pk)
            run = entry[0]
            if run.stranded:
                self._stranded.append(run.claim)
                self.notifier.work_available()
            if run.resumes_at is not None:
                self._look_by(run.resumes_at)
        if self._backlog:
            self.notifier.work_available()  # a slot is free and work may be waiting for it
        if not task.cancelled() and task.exception() is not None:
            log.error("instance %s failed inside the runtime", pk, exc_info=task.exception())

    def _held(self, pk: int) -> None:
        """Run ``pk`` waits in memory: its slot is free, and it no longer counts as new."""
        self._new.discard(pk)
        if self._backlog:
            self.notifier.work_available()

    def _look_by(self, ready_at: int) -> None:
        """An instance left memory until ``ready_at``: look for work by then. (Noted apart
        from ``_look_at``, which a look at the database may be computing right now.)"""
        when = ready_at - self.settings.claim_ahead_ms
        if self._look_at is not None and when >= self._look_at:
            return  # the next look comes by then anyway
        if self._look_floor is None or when < self._look_floor:
            self._look_floor = when
            if self._look_at is not None:  # else the look being chosen will heed the floor
                self.notifier.look_again()

    # ------------------------------------------------------------ eager start (``Taker``)
    def room(self) -> int:
        if not self._accepting or self._backlog:
            return 0
        return min(self.settings.max_concurrency - self.active, self._new_room())

    def _new_room(self) -> int:
        return max(0, self.settings.new_concurrency - len(self._new))

    def lease_ms(self) -> int:
        return self.settings.lease_ms

    def take(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            self._start(claim, self.settings.hold_ms)
            if not self._accepting:  # stopping meanwhile: hand it back at its first step
                self._runs[claim.instance.pk][0].drain()

    def hand_event(self, pk: int, event: Event | None) -> bool:
        held = self._runs.get(pk)
        if held is None:
            return False
        held[0].offer(event)
        return True

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.heartbeat_ms / 1000)
            try:
                await self.refresh()
            except StoreUnavailableError as exc:
                log.warning("%s; worker %s renews its leases again shortly", exc.message, self.id)
            except Exception:
                log.exception("renewing leases failed; retrying")

    async def refresh(self, *, renew: bool = True) -> None:
        """Apply what users changed (pause, resume, terminate, events) and, with ``renew``,
        extend the leases of the instances this worker runs (not of one whose run a database
        error stopped: that lease lapses, and the instance resumes from its commits)."""
        if not self._runs:
            return
        # Only runs claimed before the query started can be judged by its answer.
        runs = list(self._runs.items())
        now = self.clock.now_ms()
        self._checked_at = now
        found = (
            await self.store.renew(self.id, now, self.settings.lease_ms, pks=[pk for pk, _ in runs])
            if renew
            else await self.store.owned(self.id)
        )
        owned = {o.pk: o for o in found}
        for pk, (run, task) in runs:
            state = owned.get(pk)
            if state is None or state.epoch != run.claim.epoch:
                task.cancel()  # terminated, restarted, or taken over: stop at once
                continue
            run.request_pause(state.status is InstanceStatus.WAITING_FOR_PAUSE)
            if state.ready_at is not None and state.ready_at <= now:
                run.wake()

    async def _hand_back(self) -> None:
        """Drain: no new steps start; running attempts get ``drain_ms`` to finish and commit;
        whatever is left is cancelled. Then every lease is released for other workers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_ms / 1000
        # Runs started eagerly while draining join the drain.
        while tasks := [task for _run, task in self._runs.values() if not task.done()]:
            for run, _task in self._runs.values():
                run.drain()
            _done, pending = await asyncio.wait(tasks, timeout=max(0, deadline - loop.time()))
            for task in pending:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
        try:
            await self.store.release_all(self.id)
        except Exception:
            log.exception(
                "could not hand back leases; they expire in %d ms", self.settings.lease_ms
            )

    async def run_until_idle(self, *, advance: bool = True, max_rounds: int = 100_000) -> int:
        """Drive every ready instance until none is left; for tests and ``stepstone.testing``.

        With a ``FakeClock`` and ``advance``, the clock jumps to the next timer whenever nothing
        is ready, so sleeps, retry delays and wait timeouts pass at once. Waiting instances are
        evicted at once (no hold). Returns the number of instance runs driven.
        """
        driven = 0
        for _ in range(max_rounds):
            await fire_due(self.store, self.clock, self.notifier)
            claims = await self.store.claim(
                self.id,
                self.clock.now_ms(),
                self.settings.lease_ms,
                self.settings.claim_batch,
                RUNNABLE,
                start=ON_CLAIM,
                first=IN_PROGRESS,
            )
            if claims:
                # wait, not gather: a run cancelled by a user's terminate is not an error here
                await asyncio.wait([self._start(c, 0) for c in claims])
                driven += len(claims)
                continue
            if advance and isinstance(self.clock, FakeClock):
                # Jump to instance timers only: a cron schedule would never let it be idle.
                wakeup = await self.store.next_wakeup(self.clock.now_ms(), schedules=False)
                if wakeup is not None:
                    await self.clock.set(wakeup)
                    continue
            return driven
        raise RuntimeError(f"instances were still running after {max_rounds} rounds")
