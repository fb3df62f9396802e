"""How a run looks on the terminal: the plan, live progress, stop notices, the closing summary.

In: what the runner hands a :class:`~pcxbatch.context.RunUI` (a confirmation, row results,
stop reasons, unfinished runs) and the results it returns. Out: lines on stdout (the summary,
whose last line names the report folder) and stderr (progress, warnings), or with
``--log-format json`` JSON events on stderr and nothing on stdout unless asked
(:mod:`~pcxbatch.cli.output` carries the words; no write failure ever stops a run).

``summaries`` prints what each command says when it ends. rich draws progress bars on a
terminal and stays plain (no colours, timestamped lines) when output goes to a file or a cron
mail. Every text that came from outside (a file name, a cell, a server message) goes through
:func:`~pcxbatch.cli.options.safe` first.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from pcxbatch.cli import output
from pcxbatch.cli.options import safe
from pcxbatch.cli.summaries import describe_age, plan_lines, say, unfinished_lines
from pcxbatch.model import Outcome, RowResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pcxbatch.context import Confirmation, PlanFacts, RunResult
    from pcxbatch.runfolder import UnfinishedRun

#: Plain progress lines (logs, cron mail) come at most this often.
LINE_EVERY = 5.0

err = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(line: str) -> None:
    """One plain line on stderr (a ``warning`` event in json mode)."""
    if output.state.json:
        output.emit("warning", message=line)
    else:
        err.print(line, markup=False)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TerminalUI:
    """Draws a run on the terminal: the plan, live progress, stop notices."""

    def __init__(self, *, ask: bool) -> None:
        self._ask = ask
        self._fancy = err.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._counts: Counter[str] = Counter()
        self._retries = 0
        self._throttled = 0
        self._total = 0
        self._started = time.monotonic()
        self._last_line = 0.0
        self._last_done = -1

    def planned(self, plan: Confirmation) -> bool:
        """Print what will be sent where; ask for a yes on an interactive real run."""
        sheet = f", sheet {safe(plan.sheet)!r}" if plan.sheet else ""
        say(f"job {plan.job.name}: {safe(str(plan.job.input))}{sheet}")
        counts = {k: v for k, v in plan.counts.items() if v}
        decided = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "not_attempted")
        sending = ", ".join(f"{n} {action}" for action, n in plan.to_send.items()) or "nothing"
        if plan.dry_run:
            say(f"dry run: would send {sending}; {decided or 'no other rows'}")
            return True
        for line in plan_lines(plan.plan) if plan.plan else []:
            say(line)
        say(f"to send: {sending} -> {safe(plan.target)}")
        if decided:
            say(f"not sent: {decided}")
        say(f"credential: {plan.credential}")
        if not self._ask or not plan.to_send:
            return True
        total = sum(plan.to_send.values())
        try:
            with output.speaking():
                return click.confirm(
                    f"Send {total} change(s) from {safe(plan.job.input.name)}{sheet} to"
                    f" {safe(plan.target)}?",
                    default=False,
                )
        except click.exceptions.Abort:  # Ctrl-C or end of input at the prompt: a no
            click.echo()
            return False

    def started(self, total: int) -> None:
        """Sending begins."""
        self._total = total
        self._started = time.monotonic()
        if self._fancy:
            self._progress = Progress(
                TextColumn("[bold]sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                console=err,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("send", total=total, rate="", detail="")
        else:
            self._line(force=True)

    def result(self, result: RowResult) -> None:
        """One row done: update the counts and the progress display."""
        output.state.answered = True
        self._count(result)
        if self._progress is not None and self._task is not None:
            done = sum(self._counts.values())
            self._progress.update(
                self._task, completed=done, rate=f"{self._rate():.1f}/s", detail=self._detail()
            )
        else:
            self._line()

    def stopping(self, reason: str) -> None:
        """The run stops early; say why right away."""
        console = self._progress.console if self._progress else err
        console.print(f"stopping: {safe(reason)}", markup=False)

    def notice(self, text: str) -> None:
        """Something to know while the run goes on (a wait the API asked for, say)."""
        console = self._progress.console if self._progress else err
        console.print(f"note: {safe(text)}", markup=False)

    def resuming(self, run: UnfinishedRun) -> None:
        """Say that an unfinished run is being finished rather than a new one started."""
        say(
            f"resuming the unfinished run {run.path}, started {run.started}"
            f" ({describe_age(run.age_seconds)} ago): {run.remaining} row(s) left"
        )

    def left_unfinished(self, runs: Sequence[UnfinishedRun]) -> None:
        """Say which older runs stay unfinished (repeated at the end, by print_result)."""
        for run in runs:
            for line in unfinished_lines(run):
                say(line)

    def listing(self, pages: int, listed: int, found: int) -> None:
        """A preview's listing goes on (not shown during a run)."""

    def finished(self, result: RunResult) -> None:
        """The report is written (the summary table follows on stdout)."""

    def close(self) -> None:
        """Take the live display down (before the summary is printed)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        elif self._total:
            self._line(force=True)

    def _count(self, result: RowResult) -> None:
        self._counts[result.outcome.value] += 1
        self._retries += max(result.attempts - 1, 0)
        self._throttled += result.throttled

    def _rate(self) -> float:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        return sum(self._counts.values()) / elapsed

    def _detail(self) -> str:
        parts = [f"{k} {n}" for k, n in sorted(self._counts.items())]
        parts.append(f"retries {self._retries}")
        if self._throttled:
            parts.append(f"throttled {self._throttled}")
        return ", ".join(parts)

    def _line(self, *, force: bool = False) -> None:
        """A plain timestamped progress line, at most every few seconds, never twice the same."""
        now = time.monotonic()
        done = sum(self._counts.values())
        if done == self._last_done or (not force and now - self._last_line < LINE_EVERY):
            return
        self._last_line, self._last_done = now, done
        warn(f"{_stamp()} {done}/{self._total} rows, {self._rate():.1f}/s, {self._detail()}")


class JsonUI(TerminalUI):
    """One JSON object per event on stderr (``--log-format json``), for log collectors.

    Events: ``run_planned``, ``run_resumed``, ``run_started``, ``row_retried``, ``row_failed``,
    ``row_not_found``, ``notice``,
    ``run_stopping``, ``progress`` (at most every 5 s) and ``run_finished``. Credentials appear
    only as their safe description; row events carry the row number, not the row's cells.
    """

    def __init__(self, *, ask: bool) -> None:
        super().__init__(ask=ask)
        self._fancy = False

    def planned(self, plan: Confirmation) -> bool:
        self._emit(
            "run_planned",
            job=plan.job.name,
            run_dir=str(plan.run_dir),
            target=plan.target,
            credential=plan.credential,
            dry_run=plan.dry_run,
            to_send=plan.to_send,
            counts={k: v for k, v in plan.counts.items() if v},
            **_plan_fields(plan.plan),
        )
        if not self._ask:
            return True
        with output.speaking():
            return super().planned(plan)

    def resuming(self, run: UnfinishedRun) -> None:
        self._emit("run_resumed", **_run_fields(run))

    def left_unfinished(self, runs: Sequence[UnfinishedRun]) -> None:
        for run in runs:
            self._emit("unfinished_run", **_run_fields(run))

    def started(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()
        self._emit("run_started", rows=total)

    def result(self, result: RowResult) -> None:
        output.state.answered = True
        self._count(result)
        if result.attempts > 1:
            self._emit(
                "row_retried",
                row=result.row,
                attempts=result.attempts,
                throttled=result.throttled,
                outcome=result.outcome.value,
            )
        if result.outcome in (Outcome.FAILED, Outcome.NOT_FOUND):
            self._emit(
                f"row_{result.outcome.value}",
                row=result.row,
                http_status=result.http_status,
                message=result.message,
                request_id=result.request_id,
            )
        now = time.monotonic()
        if now - self._last_line >= LINE_EVERY:
            self._last_line = now
            self._emit(
                "progress",
                done=sum(self._counts.values()),
                rows=self._total,
                rate=round(self._rate(), 2),
                retries=self._retries,
                throttled=self._throttled,
            )

    def stopping(self, reason: str) -> None:
        self._emit("run_stopping", reason=reason)

    def notice(self, text: str) -> None:
        self._emit("notice", message=text)

    def finished(self, result: RunResult) -> None:
        self._emit(
            "run_finished",
            run_dir=str(result.run_dir) if result.run_dir else None,
            exit_code=int(result.exit_code),
            counts={k: v for k, v in result.counts.items() if v},
            stopped=result.stopped,
            retries=self._retries,
            throttled=self._throttled,
            unfinished_runs=[str(u.path) for u in result.unfinished],
            note=result.note,
        )

    def close(self) -> None:
        pass

    @staticmethod
    def _emit(event: str, **fields: Any) -> None:
        output.emit(event, **fields)


def _run_fields(run: UnfinishedRun) -> dict[str, Any]:
    return {
        "run_dir": str(run.path),
        "kind": run.kind,
        "started": run.started,
        "age_seconds": round(run.age_seconds),
        "remaining": run.remaining,
        "resume": f"pcxbatch resume {run.path}",
        "abandon": f"pcxbatch abandon {run.path}",
    }


def _plan_fields(plan: PlanFacts | None) -> dict[str, Any]:
    if plan is None:
        return {}
    return {
        "plan_hash": plan.plan_hash,
        "previewed_by": plan.previewed_by,
        "previewed_at": plan.previewed_at,
        "previewed_against": plan.previewed_against,
        "transitions": [{"from": a, "to": b, "rows": n} for a, b, n in plan.transitions],
    }


class PreviewUI(TerminalUI):
    """A preview's terminal: a line (or a ``preview_listing`` event) every few seconds while a
    big tenant is listed."""

    def __init__(self) -> None:
        super().__init__(ask=False)
        self._last_listing = time.monotonic()

    def listing(self, pages: int, listed: int, found: int) -> None:
        if time.monotonic() - self._last_listing < LINE_EVERY:
            return
        self._last_listing = time.monotonic()
        if output.state.json:
            output.emit("preview_listing", pages=pages, listed=listed, found=found)
        else:
            warn(
                f"{_stamp()} listed {listed} users in {pages} page(s); found {found} of the file's"
            )
