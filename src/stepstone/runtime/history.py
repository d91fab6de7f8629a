"""An instance's committed steps, as replay looks them up: by name and occurrence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from stepstone.domain.errors import DeterminismError
from stepstone.domain.records import StepRecord, StepType
from stepstone.sdk.errors import StepLimitError


class History:
    """Matches each step call to its record; unmatched calls are new steps.

    A call whose recorded step has another type, or a run that ends while recorded steps were
    never reached, means the code no longer matches what the instance did: a determinism error.
    Once found, a mismatch stands: code that catches it cannot go on to run new steps.
    """

    def __init__(self, records: Sequence[StepRecord], max_steps: int) -> None:
        self._records = {r.key: r for r in records}
        self._counts: Counter[str] = Counter()
        """Calls so far by name: the records up to each count are the ones the code reached."""
        self._next_seq = max((r.seq for r in records), default=0) + 1
        self._calls = 0
        self._max_steps = max_steps
        self.divergence: DeterminismError | None = None
        """The first mismatch found, even if the workflow's code caught it."""

    def lookup(self, name: str, type: StepType) -> tuple[int, StepRecord | None]:
        """Count one more call of ``name`` and return its occurrence and recorded step, if any."""
        if self.divergence is not None:
            raise self.divergence
        self._calls += 1
        if self._calls > self._max_steps:
            raise StepLimitError(
                f"this instance has reached its limit of {self._max_steps:,} steps; "
                "raise the workflow's limits['steps'] if it really needs more"
            )
        self._counts[name] += 1
        count = self._counts[name]
        record = self._records.get((name, count))
        if record is not None and record.type != type:
            self.divergence = DeterminismError(
                f"step {name!r} (occurrence {count}) was a {record.type.value} step when this "
                f"instance ran it, but the code now makes it a {type.value} step; the code "
                "changed under a running instance: deploy a new version instead"
            )
            raise self.divergence
        return count, record

    def peek(self, name: str, count: int = 1) -> StepRecord | None:
        """The record of ``name`` (occurrence ``count``), if any, without counting a call."""
        return self._records.get((name, count))

    def next_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def remember(self, record: StepRecord) -> None:
        """Keep ``record``, new or changed, of a call already counted."""
        self._records[record.key] = record

    def check_all_reached(self) -> None:
        """Raise if a step committed earlier was not reached by the code this time."""
        if self.divergence is not None:
            raise self.divergence
        missed = sorted(
            (
                r
                for (name, count), r in self._records.items()
                if count > self._counts[name] and r.type is not StepType.ROLLBACK
            ),
            key=lambda r: r.seq,
        )
        if missed:
            names = ", ".join(f"{r.name!r}" for r in missed[:5])
            raise DeterminismError(
                f"the instance's history has step(s) {names} that the code no longer reaches; "
                "the code changed under a running instance: deploy a new version instead"
            )
