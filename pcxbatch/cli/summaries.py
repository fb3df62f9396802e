"""What each command prints when it ends, and the sentences the run's UI shares with it.

In: a :class:`~pcxbatch.context.RunResult`, :class:`~pcxbatch.context.PreviewResult` or a
validation's counts; an unfinished run; an apply's plan facts. Out: the closing summary on
stdout (its last line names the report folder), or with ``--log-format json`` one closing event
on stderr and nothing on stdout unless ``--summary`` asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from pcxbatch.cli import output
from pcxbatch.cli.options import safe
from pcxbatch.model import Outcome

if TYPE_CHECKING:
    from pcxbatch.config import Job
    from pcxbatch.context import PlanFacts, PreviewResult, RunResult
    from pcxbatch.runfolder import UnfinishedRun

#: Outcomes in the order a person reads them.
OUTCOME_ORDER = [o.value for o in Outcome]

out = Console(highlight=False, soft_wrap=True)


def say(line: str) -> None:
    """One plain line on stdout (never read as rich markup); none when stdout must be quiet."""
    if not output.quiet():
        out.print(line, markup=False)


def describe_age(seconds: float) -> str:
    """How long ago, for a person: ``40 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def unfinished_lines(run: UnfinishedRun) -> list[str]:
    """What to say about a run left unfinished: which, how old, how to finish or close it."""
    what = "an apply" if run.kind == "apply" else "a run"
    return [
        f"left unfinished: {what} of this job, {run.path}, started {run.started}"
        f" ({describe_age(run.age_seconds)} ago), {run.remaining} row(s) not sent",
        f"  to finish it: pcxbatch resume {run.path}",
        f"  to close it without sending them: pcxbatch abandon {run.path}",
    ]


def plan_lines(plan: PlanFacts) -> list[str]:
    """What an apply shows about its plan before it sends."""
    lines = [
        f"plan sha256 {plan.plan_hash}",
        f"previewed by {safe(plan.previewed_by)!r} (the name the previewer's environment gave)"
        f" at {plan.previewed_at}, against {safe(plan.previewed_against)}",
    ]
    lines += [f"  {n} user(s) go from {safe(a)} to {safe(b)}" for a, b, n in plan.transitions]
    return lines


def print_result(result: RunResult) -> None:
    """The closing summary of a run; the last line names the report folder (when there is one)."""
    if output.quiet():
        return
    _outcome_table(result)
    if result.note:
        say(safe(result.note))
    if result.stopped:
        say(f"stopped: {safe(result.stopped)}")
    if result.run_dir and result.counts.get(Outcome.NOT_ATTEMPTED.value):
        say(f"to finish this run: pcxbatch resume {result.run_dir}")
    elif result.run_dir and result.counts.get(Outcome.FAILED.value):
        # The changes are idempotent: sending a failed row again is safe (README).
        say(f"to send the failed rows again: pcxbatch run --retry-failed {result.run_dir}")
    for run in result.unfinished:
        for line in unfinished_lines(run):
            say(line)
    say(f"exit code {int(result.exit_code)}")
    if result.run_dir:
        say(f"report: {result.run_dir}")


def print_preview(job: Job, result: PreviewResult) -> None:
    """What a preview found: counts per class, the transitions, the first problem rows, and the
    plan's full hash (a reviewer can name the plan they signed off by it)."""
    if output.state.json:
        output.emit(
            "preview_finished",
            job=job.name,
            target=result.target,
            counts=result.counts,
            transitions=[{"from": a, "to": b, "rows": n} for a, b, n in result.transitions],
            plan=str(result.plan_path),
            plan_hash=result.plan_hash,
            report_dir=str(result.run_dir),
            exit_code=int(result.exit_code),
        )
    if output.quiet():
        return
    say(f"preview of {safe(str(job.input))} against {safe(result.target)}")
    table = _table("rows", "count")
    for kind, n in result.counts.items():
        table.add_row(kind, str(n))
    out.print(table)
    for before, after, n in result.transitions:
        say(f"  {n} user(s) go from {safe(before)} to {safe(after)}")
    if result.problems:
        out.print()
        problem_table(result.problems)
    say(f"plan: {result.plan_path}")
    say(f"plan sha256 {result.plan_hash}")
    say(f"apply it with: pcxbatch apply {result.plan_path}")
    say(f"report: {result.run_dir}")


def print_validation(
    source: str, sheet: str | None, counts: Mapping[str, int], problems: list[tuple[int, str, str]]
) -> None:
    """What ``validate`` found: rows per class, then the first problem rows."""
    if output.state.json:
        output.emit(
            "validated",
            input=source,
            sheet=sheet,
            rows=sum(counts.values()),
            counts=dict(counts),
            problems=[{"row": r, "outcome": o, "message": m} for r, o, m in problems],
        )
    if output.quiet():
        return
    where = f", sheet {safe(sheet)!r}" if sheet else ""
    say(f"{source}{where}: {sum(counts.values())} data rows")
    summary = _table("rows", "count")
    for key, n in sorted(counts.items()):
        summary.add_row(key, str(n))
    out.print(summary)
    if problems:
        out.print()
        problem_table(problems)
        hidden = counts.get("invalid", 0) + counts.get("duplicate", 0) - len(problems)
        if hidden > 0:
            say(f"... and {hidden} more (use --show N to list more)")


def problem_table(problems: list[tuple[int, str, str]]) -> None:
    """Rows a person must look at: row number, outcome, why."""
    table = _table("row", "outcome", "why")
    for row, outcome, message in problems:
        # Text(): a cell from the file must never be read as rich markup.
        table.add_row(str(row), outcome, Text(safe(message)))
    out.print(table)


def _table(*columns: str) -> RichTable:
    table = RichTable(show_header=True, header_style="bold", box=None)
    for name in columns:
        table.add_column(name, justify="right" if name in ("row", "count", "rows") else "left")
    return table


def _outcome_table(result: RunResult) -> None:
    table = _table("outcome", "rows")
    for outcome in OUTCOME_ORDER:
        if result.counts.get(outcome):
            table.add_row(outcome, str(result.counts[outcome]))
    if result.counts:
        out.print(table)
    if result.problems:
        out.print()
        problem_table([(p.row, p.outcome.value, p.message) for p in result.problems])
        hidden = sum(
            result.counts.get(o, 0) for o in ("failed", "invalid", "duplicate", "not_found")
        )
        if hidden > len(result.problems):
            say(f"... {hidden - len(result.problems)} more in the report")
