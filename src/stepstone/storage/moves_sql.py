"""Status moves of running instances, many at once: the runtime's compare-and-set.

A move is fenced by its claim (owner and epoch) and by the statuses it expects. Moves queued
together commit in one transaction; on a server the moves of one shape are one statement over
arrays and every statement of the batch goes in one round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, update
from sqlalchemy.sql.dml import Update

from stepstone.domain.records import Claim, StepRecord
from stepstone.storage.dialect import Dialect
from stepstone.storage.prepared import Prepared, Unnested, pipelined, status_literals
from stepstone.storage.tables import instances

Shape = tuple[frozenset[str], frozenset[str], bool]
"""A move's statuses expected, columns set, and whether it tells other processes."""


@dataclass(frozen=True, slots=True)
class Move:
    """One run's status move, waiting for its commit beside others."""

    shape: Shape
    params: dict[str, Any]
    claim: Claim
    steps: Sequence[StepRecord]
    """Records carried by the move (the run's deferred ones)."""
    step_values: list[dict[str, Any]]
    now: int
    wake_for: list[str]
    """Event types that wake the instance at once if one is pending (a wait leaving memory)."""
    ended: dict[str, Any] | None
    """A child's end to tell its parent: ``announce_end``'s arguments."""


def outcome_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a child's end tells its parent, from the fields its last move sets."""
    return {k: fields.get(k) for k in ("output", "error_name", "error_message")}


def run_moves(conn: Connection, dialect: Dialect, items: Sequence[Move]) -> list[bool]:
    """Whether each move found its instance where it expected it. On a server, the moves
    of one shape are one statement over arrays (``move_many``) and every statement goes
    in one round trip; one instance's moves keep their order (``rounds``)."""
    if dialect.in_process or len(items) == 1:
        return [move_statement(*m.shape).run(conn, m.params).rowcount == 1 for m in items]
    moved = [False] * len(items)
    for indexes in rounds(items):
        shapes: dict[Shape, list[int]] = {}
        for i in indexes:
            shapes.setdefault(items[i].shape, []).append(i)
        runs = []
        for shape, group in shapes.items():
            if len(group) == 1:
                runs.append((move_statement(*shape), items[group[0]].params))
                continue
            many = move_many(*shape)
            params = many.params([items[i].params for i in group])
            params.update(dialect.signal_values() if shape[2] else {})
            runs.append((many.prepared, params))
        for group, cursor in zip(shapes.values(), pipelined(conn, runs), strict=True):
            if len(group) == 1:
                moved[group[0]] = cursor.rowcount == 1
                continue
            found = {row[0] for row in cursor.fetchall()}
            for i in group:
                moved[i] = items[i].claim.instance.pk in found
    return moved


def rounds(items: Sequence[Move]) -> list[list[int]]:
    """``items``' indexes in rounds in which no instance moves twice, its moves in order."""
    found: list[list[int]] = []
    last: dict[int, int] = {}
    for i, move in enumerate(items):
        pk = move.claim.instance.pk
        at = last.get(pk, -1) + 1
        if at == len(found):
            found.append([])
        found[at].append(i)
        last[pk] = at
    return found


@functools.cache
def move_statement(expected: frozenset[str], columns: frozenset[str], tells: bool) -> Prepared:
    """A move from ``expected`` statuses setting ``columns`` (bound as ``v_<column>``); with
    ``tells``, the moved row also notifies the other processes (``Dialect.signal_values``)."""
    values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in columns}
    fence: list[Any] = [bindparam(name) for name in ("b_pk", "b_owner", "b_epoch")]
    statement = _fenced_move(*fence, expected=expected, values=values)
    if tells:
        statement = statement.returning(_TOLD)
    return Prepared(statement)


@functools.cache
def move_many(expected: frozenset[str], columns: frozenset[str], tells: bool) -> Unnested:
    """``move_statement`` for many instances at once: the same parameters, as arrays; returns
    the keys of the instances it moved."""
    names = {"b_pk": instances.c.pk.type, "b_owner": instances.c.lease_owner.type}
    names["b_epoch"] = instances.c.lease_epoch.type
    names.update({f"v_{c}": instances.c[c].type for c in sorted(columns)})

    def build(rows: Any) -> Any:
        values = {c: rows.c[f"v_{c}"] for c in columns}
        fence = rows.c.b_pk, rows.c.b_owner, rows.c.b_epoch
        moved = _fenced_move(*fence, expected=expected, values=values)
        return moved.returning(instances.c.pk, *([_TOLD] if tells else []))

    return Unnested(names, build)


def _fenced_move(
    pk: Any, owner: Any, epoch: Any, *, expected: frozenset[str], values: Mapping[str, Any]
) -> Update:
    """The update of instance ``pk`` if ``owner`` still holds it under ``epoch`` and its status
    is one of ``expected``."""
    return (
        update(instances)
        .where(
            instances.c.pk == pk,
            instances.c.lease_owner == owner,
            instances.c.lease_epoch == epoch,
            instances.c.status.in_(status_literals(expected)),
        )
        .values({c: values[c] for c in sorted(values)})
    )


_TOLD = func.pg_notify(bindparam("channel"), bindparam("origin"))
