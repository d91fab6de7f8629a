"""Adding an event to an instance, inside a caller's transaction: the one way events arrive,
whether a user sends one or a child run's end is announced to its parent."""

from __future__ import annotations

import functools

from sqlalchemy import Connection, bindparam, insert, literal, or_, update

from stepstone.domain.children import child_event_type, child_outcome
from stepstone.domain.status import InstanceStatus
from stepstone.storage.dialect import Dialect
from stepstone.storage.prepared import Prepared
from stepstone.storage.tables import events, instances

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
    return Prepared(
        update(instances)
        .where(
            instances.c.pk == bindparam("b_pk"),
            instances.c.status.in_([literal(s) for s in sorted(statuses)]),
            or_(instances.c.ready_at.is_(None), instances.c.ready_at > bindparam("b_now")),
        )
        .values(ready_at=bindparam("b_now"))
    )
