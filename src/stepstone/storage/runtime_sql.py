"""What workers do to the instances they drive, as SqlStore queries: the hot path.

Every statement here is built once, at import, with bind parameters: building a SQLAlchemy
statement and its cache key costs more than executing it (measured: 420 µs to build the claim
query, 35 µs to run it built). Writes by a worker on an instance it owns are fenced by its claim.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    String,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)

from stepstone.domain.errors import ValidationError
from stepstone.domain.records import Claim, Event, StepRecord, StepState, StepType
from stepstone.domain.status import RUNNABLE, InstanceStatus
from stepstone.storage import events_sql, rows
from stepstone.storage.base import KEEP, LeaseLostError, OwnedInstance
from stepstone.storage.database import Database
from stepstone.storage.dialect import Dialect
from stepstone.storage.moves_sql import Move, outcome_fields, run_moves
from stepstone.storage.prepared import Prepared, Unnested, status_literals
from stepstone.storage.tables import events, instances, steps, workflows
from stepstone.storage.tables import schedules as cron_schedules

_INSTANCE_FIELDS = frozenset(
    {
        "output",
        "error_name",
        "error_message",
        "started_at",
        "ended_at",
        "rollback_outcome",
        "rollback_error_name",
        "rollback_error_message",
        "purge_at",
    }
)


class RuntimeQueries:
    """Mixed into ``SqlStore``: claims, leases, step results, events taken, status moves."""

    _db: Database
    _dialect: Dialect

    def _init_runtime(self) -> None:
        unsettled = steps.c.state.not_in(status_literals(_SETTLED))
        keys = ("instance_pk", "name", "count")
        self._upsert_step = Prepared(self._dialect.upsert(steps, keys=keys, where=unsettled))
        self._fenced_upsert_step = Prepared(
            self._dialect.upsert(steps, keys=keys, where=unsettled, source=_FENCED_STEP)
        )
        self._upsert_steps = Unnested(
            {c.name: c.type for c in steps.c},
            lambda rows: self._dialect.upsert(
                steps, keys=keys, where=unsettled, source=select(*rows.c)
            ),
        )
        self._candidate_queries: dict[tuple[frozenset[str], bool], Prepared] = {}

    def _candidates(self, statuses: frozenset[str], *, expired: bool) -> Prepared:
        query = self._candidate_queries.get((statuses, expired))
        if query is None:
            built = _candidates(statuses, expired=expired)
            query = Prepared(self._dialect.skip_locked(built, of=instances))
            self._candidate_queries[(statuses, expired)] = query
        return query

    def _ready_queries(self, statuses: frozenset[str]) -> list[Prepared]:
        """In process (SQLite), one query per status walks the index in order, and the oldest
        of them go first; a server gets one query for them all (one round trip, one sort)."""
        if not statuses:
            return []
        if self._dialect.in_process:
            return [self._candidates(frozenset({s}), expired=False) for s in sorted(statuses)]
        return [self._candidates(statuses, expired=False)]

    async def claim(
        self,
        owner: str,
        now: int,
        lease_ms: int,
        limit: int,
        runnable: Collection[InstanceStatus],
        *,
        start: Mapping[InstanceStatus, InstanceStatus] | None = None,
        first: Collection[InstanceStatus] = (),
        lapsed: bool = True,
        ahead_ms: int = 0,
        new_limit: int | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` ready instances; ``start`` moves each claimed instance from
        its status to another in the same transaction (the runtime's first move, with
        ``started_at`` set if it was not), saving a commit per instance. Instances whose
        lease ran out come first (with ``lapsed``: finding them walks every lease, so a worker
        looks once a poll interval), then those in ``first`` statuses (ready now or within
        ``ahead_ms``: the runtime holds them until their timer), then the rest (at most
        ``new_limit`` of them), each group oldest first."""
        values = frozenset(s.value for s in runnable)
        early = sorted(values & {s.value for s in first})
        expired = self._candidates(values, expired=True) if lapsed else None
        groups = [
            self._ready_queries(frozenset(early)),
            self._ready_queries(values - set(early)),
        ]
        moves = tuple(sorted((a.value, b.value) for a, b in (start or {}).items()))

        def tx(conn: Connection) -> list[tuple[Any, tuple[StepRecord, ...]]]:
            params = {"now": now, "ready_by": now, "limit": limit}
            found = expired.all(conn, params) if expired is not None else []
            for group, ready_by in zip(groups, (now + ahead_ms, now), strict=True):
                if len(found) >= limit:
                    break
                params["limit"] = limit - len(found)
                if group is groups[1] and new_limit is not None:
                    params["limit"] = min(params["limit"], new_limit)
                    if params["limit"] <= 0:
                        break
                params["ready_by"] = ready_by
                ready = [row for query in group for row in query.all(conn, params)]
                ready.sort(key=lambda row: row.ready_at)
                found += ready[: params["limit"]]
            room = _room(conn, found, now)
            chosen: dict[int, bool] = {}
            for row in found:
                if row.workflow_id in room:
                    if room[row.workflow_id] <= 0:
                        continue
                    room[row.workflow_id] -= 1
                chosen[row.pk] = bool(row.has_steps)
            if not chosen:
                return []
            taking: dict[str, Any] = {"owner": owner, "expires": now + lease_ms, "now": now}
            result: Sequence[Any]
            if len(chosen) == 1:
                one = _claim_statement(moves, one=True)
                result = one.all(conn, {**taking, "pk": next(iter(chosen))})
            elif self._dialect.in_process:
                # One prepared statement for any number of keys, handed over as a JSON list.
                taking["pks"] = json.dumps(list(chosen))
                result = _claim_listed(moves).all(conn, taking)
            else:
                taking["pks"] = list(chosen)
                result = conn.execute(_claim_statement(moves, one=False), taking).all()
            histories: dict[int, list[StepRecord]] = {pk: [] for pk in chosen}
            with_steps = [pk for pk, has_steps in chosen.items() if has_steps]
            found_steps: Sequence[Any] = []
            if len(with_steps) == 1:
                _END_SLEEPS.run(conn, {"pk": with_steps[0], "now": now})
                found_steps = _STEPS.all(conn, {"pk": with_steps[0]})
            elif with_steps and self._dialect.in_process:
                listed = {"pks": json.dumps(with_steps), "now": now}
                _END_SLEEPS_LISTED.run(conn, listed)
                found_steps = _STEPS_LISTED.all(conn, listed)
            elif with_steps:
                conn.execute(_END_SLEEPS_OF_MANY, {"pks": with_steps, "now": now})
                found_steps = conn.execute(_STEPS_OF_MANY, {"pks": with_steps}).all()
            for row in found_steps:
                histories[row.instance_pk].append(rows.to_step(row))
            return [(r, tuple(histories[r.pk])) for r in result]

        claimed = [
            Claim(rows.to_instance(r), owner, r.lease_epoch, steps=steps)
            for r, steps in await self._db.write(tx)
        ]
        claimed.sort(key=lambda c: (c.instance.ready_at or 0, c.instance.pk))
        return claimed

    async def renew(
        self, owner: str, now: int, lease_ms: int, *, pks: Collection[int]
    ) -> list[OwnedInstance]:
        if not pks:
            return []
        params = {"owner": owner, "pks": sorted(pks), "expires": now + lease_ms}
        found = await self._db.write(lambda conn: conn.execute(_RENEW, params).all())
        return [_owned(r) for r in found]

    async def owned(self, owner: str) -> list[OwnedInstance]:
        found = await self._db.lookup(lambda conn: _OWNED.all(conn, {"owner": owner}))
        return [_owned(r) for r in found]

    async def release(self, claims: Sequence[Claim]) -> None:
        params = [
            {"claim_pk": c.instance.pk, "claim_owner": c.owner, "claim_epoch": c.epoch}
            for c in claims
        ]
        if params:
            await self._db.write(lambda conn: conn.execute(_RELEASE, params))

    async def release_all(self, owner: str) -> None:
        await self._db.write(lambda conn: conn.execute(_RELEASE_ALL, {"owner": owner}))

    async def purge(self, now: int, limit: int) -> int:
        def tx(conn: Connection) -> int:
            pks = list(conn.execute(_PURGEABLE, {"now": now, "limit": limit}).scalars())
            if pks:
                conn.execute(delete(events).where(events.c.instance_pk.in_(pks)))
                conn.execute(delete(steps).where(steps.c.instance_pk.in_(pks)))
                conn.execute(delete(instances).where(instances.c.pk.in_(pks)))
            return len(pks)

        return await self._db.write(tx)

    async def next_wakeup(self, now: int, *, schedules: bool = True) -> int | None:
        statement = _NEXT_WAKEUP if schedules else _NEXT_TIMER
        found = await self._db.lookup(lambda conn: statement.first(conn, {"now": now}))
        values = [int(v) for v in found if v is not None]
        return min(values) if values else None

    async def load_steps(self, pk: int) -> list[StepRecord]:
        found = await self._db.lookup(lambda conn: _STEPS.all(conn, {"pk": pk}))
        return [rows.to_step(r) for r in found]

    async def save_steps(self, claim: Claim, records: Sequence[StepRecord]) -> None:
        single = len(records) == 1 and records[0].event_seq is None  # (`_save_one_step`)
        await self._db.write_batched(self._save_steps, (claim, records), single=single)

    def _save_steps(
        self, conn: Connection, items: Sequence[tuple[Claim, Sequence[StepRecord]]]
    ) -> list[LeaseLostError | None]:
        """Many instances' step results in two statements: the leases of all of them, locked
        in key order (so that batches never deadlock each other), then every result whose
        claim still holds. In process (SQLite: one writer), or for one instance (one lock,
        nothing to deadlock with), each row is fenced in the statement that writes it instead:
        one statement, and on a server one round trip fewer."""
        if len(items) == 1 and len(items[0][1]) == 1:
            return [self._save_one_step(conn, *items[0])]
        if self._dialect.in_process:
            return self._save_fenced(conn, items)
        pks = sorted({claim.instance.pk for claim, _ in items})
        if len(pks) == 1:
            return self._save_fenced(conn, items)
        found = conn.execute(_LEASES, {"pks": pks}).all()
        held = {pk: (owner, epoch) for pk, owner, epoch in found}
        outcomes: list[LeaseLostError | None] = []
        values: list[dict[str, Any]] = []
        for claim, records in items:
            pk = claim.instance.pk
            if held.get(pk) != (claim.owner, claim.epoch):
                outcomes.append(LeaseLostError(pk))
                continue
            outcomes.append(None)
            values.extend({"instance_pk": pk, **rows.step_values(r)} for r in records)
        self._write_steps(conn, values)
        _consume_written(conn, items, outcomes)
        return outcomes

    def _write_steps(self, conn: Connection, values: list[dict[str, Any]]) -> None:
        """Step rows whose instances' leases were checked already: on a server in one
        statement (a pipeline of one statement a row costs PostgreSQL more)."""
        if len(values) == 1:
            self._upsert_step.run(conn, values[0])
        elif values and self._dialect.in_process:
            self._upsert_step.run_many(conn, values)
        elif values:
            self._upsert_steps.run(conn, _one_per_key(values))

    def _save_fenced(
        self, conn: Connection, items: Sequence[tuple[Claim, Sequence[StepRecord]]]
    ) -> list[LeaseLostError | None]:
        values = [_fenced_values(claim, r) for claim, records in items for r in records]
        if self._fenced_upsert_step.run_many(conn, values) == len(values):
            outcomes: list[LeaseLostError | None] = [None] * len(items)
        else:
            # Some rows were not written: a lease is gone, or a step was settled already.
            outcomes = [_lease_lost(conn, claim) for claim, _ in items]
        _consume_written(conn, items, outcomes)
        return outcomes

    def _save_one_step(
        self, conn: Connection, claim: Claim, records: Sequence[StepRecord]
    ) -> LeaseLostError | None:
        """One result, fenced in the statement that writes it (one statement, not two)."""
        params = _fenced_values(claim, records[0])
        if self._fenced_upsert_step.run(conn, params).rowcount == 1:
            _consume(conn, claim.instance.pk, records)
            return None
        # Nothing written: the lease is gone, or the step was settled already (which a write
        # under a held lease may meet, and leaves as it is).
        return _lease_lost(conn, claim)

    async def pending_event(self, pk: int, type: str, skip: Collection[int] = ()) -> Event | None:
        params = {"pk": pk, "type": type, "limit": len(skip) + 1}
        found = await self._db.lookup(lambda conn: _PENDING_EVENTS.all(conn, params))
        for row in found:
            if row.seq not in skip:
                return Event(row.seq, row.type, row.payload, row.received_at)
        return None

    async def move(
        self,
        claim: Claim,
        *,
        expected: Collection[InstanceStatus],
        target: InstanceStatus,
        now: int,
        ready_at: int | None = KEEP,
        release: bool = False,
        wake_for: Collection[str] = (),
        steps: Sequence[StepRecord] = (),
        **fields: Any,
    ) -> bool:
        unknown = set(fields) - _INSTANCE_FIELDS
        if unknown:
            raise ValidationError(f"unknown instance fields: {sorted(unknown)}")
        values: dict[str, Any] = {"status": target.value, "modified_at": now, **fields}
        if ready_at is not KEEP:
            values["ready_at"] = ready_at
        if release:
            values.update(lease_owner=None, lease_expires_at=None)
        pk = claim.instance.pk
        # Releasing tells the other processes (a new timer, or work for any worker), by the
        # move itself: one round trip fewer. A dialect with nothing to bind (SQLite) has nobody
        # to tell (``Dialect.signal_values``).
        told = self._dialect.signal_values() if release else {}
        shape = (frozenset(s.value for s in expected), frozenset(values), bool(told))
        params = {"b_pk": pk, "b_owner": claim.owner, "b_epoch": claim.epoch, **told}
        params.update({f"v_{k}": v for k, v in values.items()})
        parent_pk = claim.instance.parent_pk
        ended = None
        if target.is_terminal and parent_pk is not None:
            ended = {"parent_pk": parent_pk, "child_id": claim.instance.id, "now": now}
            ended.update(status=target.value, **outcome_fields(fields))
        move = Move(
            shape,
            params,
            claim,
            steps,
            [{"instance_pk": pk, **rows.step_values(r)} for r in steps],
            now,
            sorted(wake_for),
            ended,
        )
        single = not (steps or wake_for or ended)
        return bool(await self._db.write_batched(self._moves, move, single=single))

    def _moves(self, conn: Connection, items: Sequence[Move]) -> list[bool]:
        """Many runs' moves in one transaction: the moves first, in order (on a server in one
        round trip), then what the moved ones carry: their steps in one write, the events they
        took, the wake-up for an event that came while the instance still looked busy, a
        child's end told to its parent."""
        moved = run_moves(conn, self._dialect, items)
        self._write_steps(
            conn, [v for m, ok in zip(items, moved, strict=True) if ok for v in m.step_values]
        )
        for m, ok in zip(items, moved, strict=True):
            if not ok:
                continue
            pk = m.claim.instance.pk
            _consume(conn, pk, m.steps)
            if m.wake_for:
                # An event that arrived while the instance still looked busy must not wait for
                # the deadline: in this same transaction, wake the instance if one is pending.
                conn.execute(_WAKE_FOR_EVENTS, {"b_pk": pk, "b_types": m.wake_for, "b_now": m.now})
            if m.ended is not None:
                events_sql.announce_end(conn, self._dialect, **m.ended)
        return moved


_SETTLED = frozenset({StepState.COMPLETE.value, StepState.SKIPPED.value})
"""States a step's row is never overwritten from: its result is committed exactly once."""


def _one_per_key(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step: a statement may not upsert a row twice. A later record of a step
    replaces an earlier one unless that one is settled (as the upserts one after another
    would: a settled step is never overwritten)."""
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in values:
        key = (row["instance_pk"], row["name"], row["count"])
        earlier = kept.get(key)
        if earlier is None or earlier["state"] not in _SETTLED:
            kept[key] = row
    return list(kept.values())


def _candidates(statuses: frozenset[str], *, expired: bool) -> Select[Any]:
    """Ready instances in ``statuses`` that nobody holds, oldest first; or, with ``expired``,
    those whose holder's lease ran out. Each walks an index of exactly what it may take
    (``ix_instances_free_ready``, by status; ``ix_instances_owner``)."""
    running = instances.alias("running")
    busy = (
        select(func.count())
        .where(
            running.c.workflow_id == instances.c.workflow_id,
            running.c.lease_expires_at >= bindparam("now"),
        )
        .scalar_subquery()
    )
    if expired:
        held = [
            instances.c.lease_owner.is_not(None),
            instances.c.lease_expires_at < bindparam("now"),
            instances.c.status.in_(status_literals(statuses)),
        ]
        order = instances.c.lease_expires_at
    else:
        held = [
            instances.c.lease_owner.is_(None),
            instances.c.ready_at.is_not(None),
            instances.c.status == literal(next(iter(statuses)))
            if len(statuses) == 1
            else instances.c.status.in_(status_literals(statuses)),
        ]
        order = instances.c.ready_at
    return (
        select(
            instances.c.pk,
            instances.c.workflow_id,
            instances.c.ready_at,
            workflows.c.concurrency_limit,
            exists().where(steps.c.instance_pk == instances.c.pk).label("has_steps"),
        )
        .join(workflows, workflows.c.id == instances.c.workflow_id)
        .where(
            *held,
            instances.c.ready_at <= bindparam("ready_by"),
            # A workflow at its concurrency limit waits; others are not held up by it.
            or_(workflows.c.concurrency_limit.is_(None), workflows.c.concurrency_limit > busy),
        )
        .order_by(order)
        .limit(bindparam("limit"))
    )


def _claim_update(start: tuple[tuple[str, str], ...]) -> Any:
    """Take instances under a lease, moving them by ``start``; returns every column."""
    values: dict[str, Any] = {
        "lease_owner": bindparam("owner"),
        "lease_expires_at": bindparam("expires"),
        "lease_epoch": instances.c.lease_epoch + 1,
    }
    if start:
        moving = instances.c.status.in_(status_literals([a for a, _ in start]))
        values["status"] = case(
            *[(instances.c.status == literal(a), literal(b)) for a, b in start],
            else_=instances.c.status,
        )
        values["started_at"] = case(
            (moving, func.coalesce(instances.c.started_at, bindparam("now"))),
            else_=instances.c.started_at,
        )
        values["modified_at"] = case((moving, bindparam("now")), else_=instances.c.modified_at)
    return update(instances).values(values).returning(*instances.c)


@functools.cache
def _claim_statement(start: tuple[tuple[str, str], ...], *, one: bool) -> Any:
    """Take the chosen instances (``pk``, or the list ``pks``), moving them by ``start``."""
    if one:
        return Prepared(_claim_update(start).where(instances.c.pk == bindparam("pk")))
    return _claim_update(start).where(instances.c.pk.in_(bindparam("pks", expanding=True)))


def _listed() -> Any:
    """The keys of a JSON list bound as ``pks``, as a subquery (SQLite's ``json_each``): one
    prepared statement for any number of keys."""
    each = func.json_each(bindparam("pks", type_=String)).table_valued("value")
    return select(each.c.value).scalar_subquery()


@functools.cache
def _claim_listed(start: tuple[tuple[str, str], ...]) -> Prepared:
    return Prepared(_claim_update(start).where(instances.c.pk.in_(_listed())))


def _room(conn: Connection, found: Sequence[Row[Any]], now: int) -> dict[str, int]:
    """How many more instances each concurrency-limited workflow among ``found`` may run."""
    limits = {r.workflow_id: r.concurrency_limit for r in found if r.concurrency_limit is not None}
    if not limits:
        return {}
    busy: dict[str, int] = dict(
        conn.execute(
            select(instances.c.workflow_id, func.count())
            .where(instances.c.workflow_id.in_(limits), instances.c.lease_expires_at >= now)
            .group_by(instances.c.workflow_id)
        ).all()
    )
    return {w: limit - busy.get(w, 0) for w, limit in limits.items()}


_OWNED_COLUMNS = (instances.c.pk, instances.c.status, instances.c.lease_epoch, instances.c.ready_at)


def _owned(row: Row[Any, Any, Any, Any]) -> OwnedInstance:
    return OwnedInstance(row.pk, InstanceStatus(row.status), row.lease_epoch, row.ready_at)


_RENEW = (
    update(instances)
    .where(
        instances.c.lease_owner == bindparam("owner"),
        instances.c.pk.in_(bindparam("pks", expanding=True)),
    )
    .values(lease_expires_at=bindparam("expires"))
    .returning(*_OWNED_COLUMNS)
)
_OWNED = Prepared(select(*_OWNED_COLUMNS).where(instances.c.lease_owner == bindparam("owner")))
_RELEASE = (
    update(instances)
    .where(
        instances.c.pk == bindparam("claim_pk"),
        instances.c.lease_owner == bindparam("claim_owner"),
        instances.c.lease_epoch == bindparam("claim_epoch"),
    )
    .values(lease_owner=None, lease_expires_at=None)
)
_RELEASE_ALL = (
    update(instances)
    .where(instances.c.lease_owner == bindparam("owner"))
    .values(lease_owner=None, lease_expires_at=None)
)
_PURGEABLE = (
    select(instances.c.pk)
    .where(instances.c.purge_at <= bindparam("now"))
    .order_by(instances.c.purge_at)
    .limit(bindparam("limit"))
)
_TIMED = sorted(s.value for s in RUNNABLE)
"""Statuses whose instances a timer may make ready (the others have no ``ready_at``)."""
_TIMERS = [
    # Instances nobody holds (a held one's timer is its holder's business), one status at a
    # time: each is a seek in ``ix_instances_free_ready``.
    select(func.min(instances.c.ready_at))
    .where(
        instances.c.lease_owner.is_(None),
        instances.c.ready_at.is_not(None),
        instances.c.status == literal(status),
        instances.c.ready_at > bindparam("now"),
    )
    .scalar_subquery()
    for status in _TIMED
]
_NEXT_TIMER = Prepared(select(*_TIMERS))
"""The earliest timer of each status, in one statement (one round trip to a server)."""
_NEXT_WAKEUP = Prepared(
    select(*_TIMERS, select(func.min(cron_schedules.c.next_at)).scalar_subquery())
)
_STEPS = Prepared(select(steps).where(steps.c.instance_pk == bindparam("pk")).order_by(steps.c.seq))


def _ending_sleeps(which: Any) -> Any:
    """Record as complete the sleeps of the instances ``which`` whose deadline has passed: the
    claim that brings an instance back after its timer does, for all it takes in one
    statement, what each replay would otherwise do with a step write of its own (the record it
    writes is the same: complete since the deadline)."""
    return (
        update(steps)
        .where(
            which,
            steps.c.type == literal(StepType.SLEEP.value),
            steps.c.state == literal(StepState.WAITING.value),
            steps.c.wake_at <= bindparam("now"),
        )
        .values(state=StepState.COMPLETE.value, ended_at=steps.c.wake_at)
    )


_END_SLEEPS = Prepared(_ending_sleeps(steps.c.instance_pk == bindparam("pk")))
_END_SLEEPS_LISTED = Prepared(_ending_sleeps(steps.c.instance_pk.in_(_listed())))
_END_SLEEPS_OF_MANY = _ending_sleeps(steps.c.instance_pk.in_(bindparam("pks", expanding=True)))
_STEPS_LISTED = Prepared(
    select(steps)
    .where(steps.c.instance_pk.in_(_listed()))
    .order_by(steps.c.instance_pk, steps.c.seq)
)
_STEPS_OF_MANY = (
    select(steps)
    .where(steps.c.instance_pk.in_(bindparam("pks", expanding=True)))
    .order_by(steps.c.instance_pk, steps.c.seq)
)
_LEASES = (
    select(instances.c.pk, instances.c.lease_owner, instances.c.lease_epoch)
    .where(instances.c.pk.in_(bindparam("pks", expanding=True)))
    .order_by(instances.c.pk)
    .with_for_update()
)
"""Who holds these instances, locked in key order (on PostgreSQL; SQLite has one writer)."""
_FENCED_STEP = (
    select(*[bindparam(c.name, type_=c.type) for c in steps.c])
    .where(
        instances.c.pk == bindparam("instance_pk"),
        instances.c.lease_owner == bindparam("f_owner"),
        instances.c.lease_epoch == bindparam("f_epoch"),
    )
    .with_for_update()
)
"""A step's row, selected only while the claim holds its instance (whose row PostgreSQL
locks until the transaction ends, as ``_FENCE`` does)."""
_PENDING_EVENTS = Prepared(
    select(events)
    .where(events_sql.pending(bindparam("pk"), bindparam("type")))
    .order_by(events.c.seq)
    .limit(bindparam("limit"))
)
_TAKE_EVENT = Prepared(
    update(events)
    .where(
        events.c.seq == bindparam("b_seq"),
        events.c.instance_pk == bindparam("b_pk"),
        events.c.consumed_by_name.is_(None),
    )
    .values(consumed_by_name=bindparam("b_name"), consumed_by_count=bindparam("b_count"))
)
_WAKE_FOR_EVENTS = (
    update(instances)
    .where(
        instances.c.pk == bindparam("b_pk"),
        select(events.c.seq)
        .where(
            events.c.instance_pk == bindparam("b_pk"),
            events.c.type.in_(bindparam("b_types", expanding=True)),
            events.c.consumed_by_name.is_(None),
        )
        .exists(),
    )
    .values(ready_at=bindparam("b_now"))
)
_FENCE = Prepared(
    select(instances.c.pk)
    .where(
        instances.c.pk == bindparam("pk"),
        instances.c.lease_owner == bindparam("owner"),
        instances.c.lease_epoch == bindparam("epoch"),
    )
    .with_for_update()
)


def _fenced_values(claim: Claim, record: StepRecord) -> dict[str, Any]:
    """The parameters of the fenced step write: the record, and the lease it needs."""
    return {
        "instance_pk": claim.instance.pk,
        "f_owner": claim.owner,
        "f_epoch": claim.epoch,
        **rows.step_values(record),
    }


def _lease_lost(conn: Connection, claim: Claim) -> LeaseLostError | None:
    params = {"pk": claim.instance.pk, "owner": claim.owner, "epoch": claim.epoch}
    return None if _FENCE.first(conn, params) is not None else LeaseLostError(claim.instance.pk)


def _consume_written(
    conn: Connection,
    items: Sequence[tuple[Claim, Sequence[StepRecord]]],
    outcomes: Sequence[LeaseLostError | None],
) -> None:
    for (claim, records), outcome in zip(items, outcomes, strict=True):
        if outcome is None:
            _consume(conn, claim.instance.pk, records)


def _consume(conn: Connection, pk: int, records: Sequence[StepRecord]) -> None:
    """Mark the events that completed waits among ``records`` took as consumed by them, in the
    transaction that commits the waits' records (after their fenced writes). An event consumed
    already means another run of the instance committed first: this one's claim is stale."""
    for record in records:
        if record.event_seq is None:
            continue
        params = {
            "b_pk": pk,
            "b_seq": record.event_seq,
            "b_name": record.name,
            "b_count": record.count,
        }
        if _TAKE_EVENT.run(conn, params).rowcount != 1:
            raise LeaseLostError(pk)
