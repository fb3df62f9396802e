"""A file's final state across runs, and what a report's lines add up to.

In: this run's id and its report lines (in row order), and the runs it follows on from (a retry
of failed rows follows the run it retries, and so on back to the run of the whole file), most
recent first, each its id and its lines in row order, or ``None`` when its folder could not be
read. Out: :func:`final_lines`, one line per row, the most recent run's line for it, with the id
of the run that decided it; :class:`Tally`, the counts a summary shows (rows per outcome, the
``from -> to`` moves, rows per deciding run).

Why merge: a retry run's journal holds only the rows it retried, but the analyst sends one
results file per input file to the auditor, so the report shows every row of the original file
in its final state and says which run decided each. Streams are merged by row number
(:func:`heapq.merge`), so memory stays flat however long the file.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from ..model import Outcome, ReportLine

__all__ = ["EarlierRun", "Tally", "final_lines"]

#: An earlier run: its id and its report lines in row order (``None``: they could not be read).
EarlierRun: TypeAlias = tuple[str, Iterable[ReportLine] | None]

#: Outcomes whose ``from -> to`` is counted: a change made, or (dry run) one that would be.
_MOVES = frozenset({Outcome.APPLIED, Outcome.PLANNED})


def _ranked(
    rank: int, run_id: str, lines: Iterable[ReportLine]
) -> Iterator[tuple[int, int, str, ReportLine]]:
    for line in lines:
        yield line.row, rank, run_id, line


def final_lines(
    run_id: str, lines: Iterable[ReportLine], earlier: Sequence[EarlierRun] = ()
) -> Iterator[tuple[str, ReportLine]]:
    """``(deciding run id, line)`` per row, in row order: the most recent run's line for it.

    A line taken from an earlier run has its message start with ``earlier run:``, so a reader
    of the message alone still sees it was not this run's doing (the id is the first item of
    the pair). With no earlier runs, this run's lines come through unchanged.
    """
    if not any(found is not None for _rid, found in earlier):
        for line in lines:  # nothing to merge: the common case, without the heap
            yield run_id, line
        return
    streams = [_ranked(0, run_id, lines)]
    streams += [
        _ranked(rank, rid, found)
        for rank, (rid, found) in enumerate(earlier, start=1)
        if found is not None
    ]
    last_row: int | None = None
    for row, _rank, rid, line in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
        if row == last_row:
            continue  # a more recent run already gave this row
        last_row = row
        if rid != run_id:
            line = replace(line, message=f"earlier run: {line.message}".rstrip(": "))
        yield rid, line


def _moves_json(moves: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"from": a or None, "to": b, "rows": n} for (a, b), n in moves.most_common()]


@dataclass
class Tally:
    """What the lines of a report add up to, counted as they stream by (:meth:`add`)."""

    run_id: str
    counts: Counter[str] = field(default_factory=Counter)  # every line, per outcome
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)  # every line's from -> to
    own_moves: Counter[tuple[str, str]] = field(default_factory=Counter)  # this run's lines'
    by_run: Counter[str] = field(default_factory=Counter)  # lines per deciding run

    def add(self, run_id: str, line: ReportLine) -> None:
        """Count one line, decided by ``run_id``."""
        self.counts[line.outcome.value] += 1
        self.by_run[run_id] += 1
        if line.outcome in _MOVES:
            move = (line.seen_status, line.target_status)
            self.moves[move] += 1
            if run_id == self.run_id:
                self.own_moves[move] += 1

    def facts(self, earlier: Sequence[EarlierRun]) -> dict[str, Any]:
        """What a summary learns from the lines: ``transitions`` (this run's ``from -> to``,
        ``from`` ``None`` when the status before was not read), and, when the report took rows
        from ``earlier`` runs, ``whole_file``: the final state of every row of the file."""
        facts: dict[str, Any] = {"transitions": _moves_json(self.own_moves)}
        if earlier:
            facts["whole_file"] = {
                "rows": sum(self.counts.values()),
                "counts": {o.value: self.counts[o.value] for o in Outcome},
                "transitions": _moves_json(self.moves),
                "rows_by_run": {
                    rid: self.by_run[rid] for rid in (self.run_id, *(rid for rid, _ in earlier))
                },
                "unreadable_runs": [rid for rid, found in earlier if found is None],
            }
        return facts
