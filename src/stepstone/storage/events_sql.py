"""Adding an event to an instance, inside a caller's transaction: the one way events arrive,
whether a user sends one or a child run's end is announced to its parent."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.sql.dml import Update

from stepstone.domain.children import child_event_type, child_outcome
from stepstone.domain.status import InstanceStatus
from stepstone.storage.dialect import Dialect
from stepstone.storage.prepared import Prepared
from stepstone.storage.tables import events, instances, workflows

WAITING = frozenset({InstanceStatus.WAITING.value})


def add_event(
    conn: Connection,
    dialect: Dialect,
    pk: int,
    type: str,
    payload: str,
    now: int,
    wake: frozenset[str] = WAITING,
) -> int:
    """Buffer the event for instance ``pk``; an instance in a ``wake`` status is made ready
    now, and other processes are told. Its sequence number."""
    if not dialect.in_process:
        _LOCK_INSTANCE.run(conn, {"b_pk": pk})  # see ``delivery``: numbers in commit order
    seq = _ADD_EVENT.scalar(conn, {"b_pk": pk, "b_type": type, "b_payload": payload, "b_now": now})
    _wake(wake).run(conn, {"b_pk": pk, "b_now": now})
    dialect.signal(conn, pk)
    return int(seq)


def announce_end(
    conn: Connection,
    dialect: Dialect,
    *,
    parent_pk: int,
    child_id: str,
    status: str,
    output: str | None,
    error_name: str | None,
    error_message: str | None,
    now: int,
) -> None:
    """Tell a child run's parent, in the child's last transaction, how the child ended: the
    parent's step waiting for it can never miss it."""
    payload = child_outcome(status, output, error_name, error_message)
    add_event(conn, dialect, parent_pk, child_event_type(child_id), payload, now)


_LOCK_INSTANCE = Prepared(
    select(instances.c.pk).where(instances.c.pk == bindparam("b_pk")).with_for_update()
)
_ADD_EVENT = Prepared(
    insert(events)
    .values(
        instance_pk=bindparam("b_pk"),
        type=bindparam("b_type"),
        payload=bindparam("b_payload"),
        received_at=bindparam("b_now"),
    )
    .returning(events.c.seq)
)


@functools.cache
def _wake(statuses: frozenset[str]) -> Prepared:
    """Make an instance in one of ``statuses`` ready now, unless it already is."""
    return Prepared(_waking(bindparam("b_pk"), statuses))


def _waking(pk: Any, statuses: frozenset[str]) -> Update:
    """The update that makes instance ``pk`` ready at ``b_now`` if it is in one of ``statuses``
    and not ready sooner."""
    return (
        update(instances)
        .where(
            instances.c.pk == pk,
            instances.c.status.in_([literal(s) for s in sorted(statuses)]),
            or_(instances.c.ready_at.is_(None), instances.c.ready_at > bindparam("b_now")),
        )
        .values(ready_at=bindparam("b_now"))
    )


def pending(pk: Any, type: Any) -> ColumnElement[bool]:
    """Events of instance ``pk`` of type ``type`` that no wait has taken yet."""
    return and_(
        events.c.instance_pk == pk, events.c.type == type, events.c.consumed_by_name.is_(None)
    )


EARLIER_PENDING = Prepared(
    select(events.c.seq)
    .where(pending(bindparam("b_pk"), bindparam("b_type")), events.c.seq < bindparam("b_seq"))
    .limit(1)
)
"""A pending event of instance ``b_pk`` of type ``b_type`` that arrived before ``b_seq``."""

TARGET = (
    select(instances.c.pk, instances.c.status, instances.c.lease_owner)
    .join(workflows, workflows.c.id == instances.c.workflow_id)
    .where(
        workflows.c.tenant == bindparam("tenant"),
        workflows.c.name == bindparam("name"),
        instances.c.id == bindparam("id"),
    )
)
"""The instance an event sent by name is for: by tenant, workflow name and instance id."""


@functools.cache
def delivery(accepted: frozenset[str], wake: frozenset[str]) -> Prepared:
    """An event sent to an instance by name, for a database server: find the instance, add
    the event if its status takes events, make it ready if it waits, and tell the other
    processes, in one statement (one round trip instead of four: on PostgreSQL, round trips
    are most of what this costs). Returns the instance's pk, status and lease owner, and
    ``seq`` (None when the event was not added) and ``first`` (no other event of its type was
    pending); no row when there is no such instance. PostgreSQL runs each data-modifying part
    exactly once, read or not.

    The instance's row is locked first, so that the events of one instance are numbered in
    the order they commit: a wait takes the earliest pending event and commits the taking
    later (``InstanceRun.take_event``), and its replay must find no earlier one appearing in
    between (on SQLite, one writer at a time, they always are). ``first`` is read in the
    statement's snapshot, taken before that lock: a delivery committed while this one waited
    for it is not seen, so two events sent at once may both say ``first``; either order is
    then one the senders could have seen (neither's answer came before the other was sent)."""
    target = TARGET.with_for_update(of=instances).cte("target")
    takes = target.c.status.in_([literal(s) for s in sorted(accepted)])
    added = (
        insert(events)
        .from_select(
            ["instance_pk", "type", "payload", "received_at"],
            select(
                target.c.pk, bindparam("b_type"), bindparam("b_payload"), bindparam("b_now")
            ).where(takes),
        )
        .returning(events.c.seq, events.c.instance_pk)
        .cte("added")
    )
    woken = (
        _waking(select(added.c.instance_pk).scalar_subquery(), wake)
        .returning(instances.c.pk)
        .cte("woken")
    )
    earlier = select(events.c.seq).where(pending(target.c.pk, bindparam("b_type"))).exists()
    told = select(
        func.pg_notify(
            bindparam("channel"), bindparam("origin") + cast(added.c.instance_pk, String)
        )
    ).cte("told")
    return Prepared(
        select(
            target.c.pk,
            target.c.status,
            target.c.lease_owner,
            select(added.c.seq).scalar_subquery().label("seq"),
            (~earlier).label("first"),
            select(func.count()).select_from(woken).scalar_subquery().label("woken"),
            select(func.count()).select_from(told).scalar_subquery().label("told"),
        )
    )
