"""One run of a job, stage by stage: read → validate → plan → execute → report.

In: a :class:`~pcxbatch.config.Job`, the credentials (or none, for the built-in sandbox or a
dry run), and a :class:`RunUI` through which the run reports progress and asks for
confirmation. Out: a :class:`RunResult` (the run folder, counts, exit code) after the report is
written; every run that got as far as reading its input leaves a folder
``REPORT_DIR/<run-id>/`` with ``results.csv``, ``results.xlsx`` (spreadsheet input) and
``summary.json``.

This module prints nothing: the ``cli`` renders what the :class:`RunUI` receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pcxbatch import __version__
from pcxbatch.client import PcxClient, RetryPolicy
from pcxbatch.config import Job, fingerprint, job_from_dict, job_to_dict
from pcxbatch.credentials import Credentials
from pcxbatch.errors import InputError, LockedError, StoppedError, UnusableError
from pcxbatch.execute import FailureGuard, execute
from pcxbatch.journal import JOURNAL_NAME, Journal
from pcxbatch.limiter import Limiter
from pcxbatch.model import (
    Action,
    Item,
    Outcome,
    PlanRow,
    ReportLine,
    RowDefaults,
    RowResult,
    UndoRow,
    Verdict,
)
from pcxbatch.plan import (
    check_age,
    check_second_person,
    load_plan,
    now_iso,
    operator,
    read_states,
    seal,
    transitions,
    undo_status,
    verdict,
)
from pcxbatch.read import Table, file_sha256, read_table
from pcxbatch.report import (
    atomic_write_text,
    write_preview,
    write_results,
    write_summary,
    write_undo,
)
from pcxbatch.validate import check_rows, resolve_columns

#: Outcomes a person must look at, and how many of those rows the terminal lists.
PROBLEMS = frozenset({Outcome.FAILED, Outcome.INVALID, Outcome.DUPLICATE})
SHOW_PROBLEMS = 10

#: A run's life in its journal: rows still being read in, ready to send, every row tried.
STATE_PREPARING = "preparing"
STATE_READY = "ready"
STATE_FINISHED = "finished"
#: What made a run folder: a plain run (resumed by running the job again), a preview, an apply.
KIND_RUN = "run"
KIND_PREVIEW = "preview"
KIND_APPLY = "apply"

#: How long in-flight requests may take to finish after an interrupt before they are abandoned.
DRAIN_SECONDS = 40.0


class RunUI(Protocol):
    """Where a run reports to (the terminal, JSON logs, or a test)."""

    def planned(self, plan: Plan) -> bool:
        """Show what is about to be sent; return False to cancel (nothing is sent)."""
        ...

    def started(self, total: int) -> None:
        """Sending starts: ``total`` rows to send."""
        ...

    def result(self, result: RowResult) -> None:
        """One row got its outcome."""
        ...

    def stopping(self, reason: str) -> None:
        """The run is stopping early (interrupt, auth failure, guard)."""
        ...

    def resuming(self, run_dir: Path, remaining: int) -> None:
        """An unfinished run of the job is picked up instead of starting over."""
        ...


@dataclass(frozen=True)
class Plan:
    """What a run is about to do, for the confirmation prompt and the preview."""

    job: Job
    run_dir: Path
    target: str  # where changes go: a URL, or "the built-in sandbox"
    credential: str  # safe description of the credential
    counts: dict[str, int]  # rows per outcome decided so far (invalid, duplicate, planned)
    to_send: dict[str, int]  # rows to send per action
    dry_run: bool


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    counts: dict[str, int]
    exit_code: int
    stopped: str | None = None
    files: list[Path] = field(default_factory=list)
    problems: list[ReportLine] = field(default_factory=list)  # the first few, in input order


def run_job(
    job: Job,
    credentials: Credentials | None,
    ui: RunUI,
    *,
    fresh: bool = False,
    transport: Any = None,
    retry: RetryPolicy | None = None,
) -> RunResult:
    """Run ``job`` from its input to its report. See the module docstring.

    When the job's latest run stopped before the end (a crash, an interrupt, a refused key) and
    ``fresh`` is False, that run is resumed instead of starting over: the same input and the same
    job settings are required. Raises :class:`~pcxbatch.errors.UnusableError` (nothing sent, no
    run folder left) or :class:`~pcxbatch.errors.LockedError`. ``transport`` replaces the HTTP
    transport (tests).
    """
    _make_report_dir(job)
    with _lock(job):
        unfinished = None if fresh or job.dry_run else find_unfinished(job)
        if unfinished is not None:
            journal = Journal(unfinished / JOURNAL_NAME)
            _check_resumable(journal, job, unfinished)
            ui.resuming(unfinished, journal.counts()[Outcome.NOT_ATTEMPTED.value])
            return _run(job, journal, unfinished, credentials, ui, transport, retry)
        # An unreadable file or a missing column stops here: nothing sent, no run folder.
        table = read_input(job)
        resolve_columns(table.columns, str(job.input))
        run_dir = _new_run_dir(job)
        try:
            journal = Journal(run_dir / JOURNAL_NAME)
            _start_journal(journal, job, sheet=table.sheet, columns=table.columns)
            journal.add_items(check_table(table, job), planned=job.dry_run)
            _check_max_rows(job, journal)
        except (UnusableError, KeyboardInterrupt):
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        journal.set_meta(state=STATE_READY)
        return _run(job, journal, run_dir, credentials, ui, transport, retry)


def resume_run(
    run_dir: Path,
    credentials: Credentials | None,
    ui: RunUI,
    overrides: Mapping[str, Any] | None = None,
    *,
    transport: Any = None,
    retry: RetryPolicy | None = None,
) -> RunResult:
    """Finish the run in ``run_dir``: send the rows that have no outcome yet, rewrite the report.

    Rows with an outcome are never sent again; rows sent without a recorded answer are sent again
    (the PUTs are idempotent). The input file must be unchanged. ``overrides`` may change pacing
    (rate, concurrency, ...), not what is sent.
    """
    journal = _open_journal(run_dir)
    meta = journal.meta()
    if meta.get("state") == STATE_PREPARING:
        raise UnusableError(f"{run_dir}: this run stopped while reading its input; start it again")
    job = job_from_dict(meta["job_settings"], overrides)
    _make_report_dir(job)
    with _lock(job):
        _check_resumable(journal, job, run_dir)
        return _run(job, journal, run_dir, credentials, ui, transport, retry)


def retry_failed(
    old_run_dir: Path,
    credentials: Credentials | None,
    ui: RunUI,
    overrides: Mapping[str, Any] | None = None,
    *,
    transport: Any = None,
    retry: RetryPolicy | None = None,
) -> RunResult:
    """A new run, linked to ``old_run_dir``, of the rows it reported failed or not_attempted."""
    old = _open_journal(old_run_dir)
    meta = old.meta()
    job = job_from_dict(meta["job_settings"], overrides)
    _make_report_dir(job)
    with _lock(job):
        run_dir = _new_run_dir(job)
        journal = Journal(run_dir / JOURNAL_NAME)
        _start_journal(
            journal,
            job,
            sheet=meta.get("sheet"),
            columns=meta["columns"],
            input_sha256=meta["input_sha256"],
            previous_run=str(old_run_dir),
        )
        copied = journal.import_rows(old, (Outcome.FAILED, Outcome.NOT_ATTEMPTED))
        old.close()
        journal.set_meta(state=STATE_READY)
        if not copied:
            journal.set_meta(state=STATE_FINISHED)
        return _run(job, journal, run_dir, credentials, ui, transport, retry)


@dataclass
class PreviewResult:
    """What a preview found, and where its report and plan are."""

    run_dir: Path
    plan_path: Path
    target: str
    counts: dict[str, int]  # rows per verdict
    transitions: list[tuple[str, str, int]]  # (from, to, rows) of the will_change rows
    pages: int  # GET /users/list pages read
    exit_code: int
    problems: list[tuple[int, str, str]] = field(default_factory=list)


def preview_job(
    job: Job,
    credentials: Credentials | None,
    *,
    plan_out: Path | None = None,
    transport: Any = None,
    on_page: Callable[[int, int, int], None] | None = None,
) -> PreviewResult:
    """Read the users' current status and classify every row; write the preview and plan.

    Sends no change: only ``GET /users/list`` pages, paced like any run. Writes
    ``REPORT_DIR/<run-id>/preview.csv`` (and ``preview.xlsx`` for spreadsheet input) with the
    counts at the top, and the plan file (``plan.json`` there, or ``plan_out``).
    """
    _make_report_dir(job)
    with _lock(job), contextlib.ExitStack() as stack:
        table = read_input(job)
        resolve_columns(table.columns, str(job.input))
        # A preview reads from the API even for a job marked dry_run: it never writes.
        base_url, credentials, target = _target(replace(job, dry_run=False), credentials, stack)
        assert credentials is not None
        run_dir = _new_run_dir(job, suffix="preview")
        journal = Journal(run_dir / JOURNAL_NAME)
        stack.callback(journal.close)
        _start_journal(journal, job, sheet=table.sheet, columns=table.columns, kind=KIND_PREVIEW)
        journal.add_items(check_table(table, job))
        found, pages = asyncio.run(
            _read_states(job, base_url, credentials, journal.pending_user_ids(), transport, on_page)
        )
        journal.set_seen(found)
        journal.set_meta(state=STATE_FINISHED, target=target)
        scope = f" of organisation {job.org_id}" if job.org_id else ""
        counts: Counter[str] = Counter()
        moves: list[tuple[str, str]] = []
        problems: list[tuple[int, str, str]] = []
        plan_rows: list[list[Any]] = []
        for line in journal.lines():
            seen = line.seen_status or None
            if line.outcome in (Outcome.INVALID, Outcome.DUPLICATE):
                kind, message = Verdict(line.outcome.value), line.message
            else:
                kind = verdict(line.target_status, seen)
                if kind is Verdict.WILL_CHANGE:
                    message = f"{seen} -> {line.target_status}"
                    moves.append((seen or "", line.target_status))
                elif kind is Verdict.UNCHANGED:
                    message = f"already {seen}; nothing will be sent"
                else:
                    message = f"no such user in the {pages} page(s) of users{scope} listed"
            counts[kind.value] += 1
            if kind not in (Verdict.WILL_CHANGE, Verdict.UNCHANGED) and len(problems) < 10:
                problems.append((line.row, kind.value, message))
            plan_rows.append(
                [
                    line.row,
                    line.user_id,
                    line.action,
                    line.target_status,
                    line.reason,
                    line.updated_by,
                    seen,
                    kind.value,
                    message,
                    list(line.values),
                ]
            )
        meta = journal.meta()
        moved = transitions(moves)
        write_preview(
            run_dir,
            meta["columns"],
            (
                PlanRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], Verdict(r[7]), r[8], tuple(r[9]))
                for r in plan_rows
            ),
            title=f"pcxbatch preview of {job.input.name} against {target} at {now_iso()}",
            counts=counts,
            transitions=moved,
            xlsx=job.input.suffix.lower() in (".xlsx", ".xlsm"),
        )
        body = {
            "job": job_to_dict(job),
            "fingerprint": fingerprint(job),
            "input": {
                "path": str(job.input),
                "file": job.input.name,
                "sha256": meta["input_sha256"],
                "sheet": meta.get("sheet"),
            },
            "columns": meta["columns"],
            "target": target,
            "previewed_by": operator(),
            "previewed_with": credentials.describe(),
            "previewed_at": now_iso(),
            "preview_dir": str(run_dir),
            "counts": dict(counts),
            "rows": plan_rows,
        }
        plan_path = plan_out or run_dir / "plan.json"
        atomic_write_text(plan_path, seal(body))
        bad = counts[Verdict.INVALID.value] + counts[Verdict.DUPLICATE.value]
        bad += counts[Verdict.NOT_FOUND.value]
        return PreviewResult(
            run_dir, plan_path, target, dict(counts), moved, pages, 1 if bad else 0, problems
        )


async def _read_states(
    job: Job,
    base_url: str,
    credentials: Credentials,
    wanted: set[str],
    transport: Any,
    on_page: Callable[[int, int, int], None] | None,
) -> tuple[dict[str, str], int]:
    if not wanted:
        return {}, 0
    client = PcxClient(
        base_url,
        credentials,
        limiter=Limiter(job.rate, job.burst),
        retry=RetryPolicy(max_attempts=job.max_attempts),
        transport=transport,
        max_connections=1,
        id_pattern=job.id_pattern,
        allow_insecure_http=job.allow_insecure_http,
    )
    try:
        return await read_states(
            client, wanted, org_id=job.org_id, page_size=job.list_page_size, on_page=on_page
        )
    finally:
        await client.aclose()


def apply_plan(
    plan_path: Path,
    credentials: Credentials | None,
    ui: RunUI,
    overrides: Mapping[str, Any] | None = None,
    *,
    transport: Any = None,
    retry: RetryPolicy | None = None,
) -> RunResult:
    """Send exactly a reviewed plan's ``will_change`` rows, after checking the plan still holds.

    Refuses (:class:`UnusableError`, nothing sent) a plan that was altered, whose input file
    changed, that is older than the job's ``max_plan_age_hours``, or, when the job requires a
    second person, that the applier previewed. Rows already in their wanted state or not found
    at the preview are reported without a request. Writes ``undo.csv`` beside the report.
    """
    body = load_plan(plan_path)
    job = job_from_dict(body["job"], overrides)
    if fingerprint(job) != body["fingerprint"]:
        raise UnusableError(
            f"{plan_path}: applying cannot change what the plan sends (action, status,"
            " reason, updated_by, sheet, ID pattern, base URL)"
        )
    check_age(body, timedelta(hours=job.max_plan_age_hours))
    applier = operator()
    check_second_person(body, applier)
    try:
        digest = file_sha256(Path(body["input"]["path"]))
    except InputError as exc:
        raise UnusableError(f"{plan_path}: cannot check the plan's input file: {exc}") from None
    if digest != body["input"]["sha256"]:
        raise UnusableError(
            f"{body['input']['file']} has changed since it was previewed; preview it again"
        )
    _make_report_dir(job)
    with _lock(job):
        run_dir = _new_run_dir(job, suffix="apply")
        journal = Journal(run_dir / JOURNAL_NAME)
        _start_journal(
            journal,
            job,
            sheet=body["input"]["sheet"],
            columns=body["columns"],
            input_sha256=digest,
            kind=KIND_APPLY,
        )
        journal.set_meta(
            plan=str(plan_path),
            plan_hash=body["hash"],
            previewed_by=body["previewed_by"],
            previewed_at=body["previewed_at"],
            applied_by=applier,
        )
        journal.add_items(_plan_items(body), planned=False)
        journal.set_seen({r[1]: r[6] for r in body["rows"] if r[6]})
        journal.set_meta(state=STATE_READY)
        return _run(job, journal, run_dir, credentials, ui, transport, retry)


def _plan_items(body: Mapping[str, Any]) -> Iterator[Item]:
    """The journal's rows for an apply: only ``will_change`` rows are left to send."""
    when = body["previewed_at"]
    for row, user_id, action, target, reason, updated_by, seen, kind, message, values in body[
        "rows"
    ]:
        outcome: Outcome | None = None
        if kind == Verdict.UNCHANGED:
            outcome, message = (
                Outcome.UNCHANGED,
                f"already {seen} at the preview ({when}); not sent",
            )
        elif kind == Verdict.NOT_FOUND:
            outcome, message = Outcome.FAILED, f"user not found at the preview ({when}); not sent"
        elif kind != Verdict.WILL_CHANGE:
            outcome = Outcome(kind)
        item = Item(
            row=row,
            user_id=user_id,
            action=Action(action) if action else None,
            target_status=target or None,
            reason=reason or None,
            updated_by=updated_by or None,
            outcome=outcome,
            message=message,
            values=tuple(values),
        )
        yield item


def find_unfinished(job: Job) -> Path | None:
    """The job's latest run folder if that run stopped before every row was tried."""
    if not job.report_dir.is_dir():
        return None
    for run_dir in sorted(job.report_dir.iterdir(), reverse=True):
        path = run_dir / JOURNAL_NAME
        if not path.is_file():
            continue
        journal = Journal(path)
        try:
            meta = journal.meta()
        finally:
            journal.close()
        if meta.get("job") != job.name or meta.get("kind") != KIND_RUN or meta.get("previous_run"):
            continue
        if meta.get("state") == STATE_READY:
            return run_dir
        return None  # the latest run of this job finished (or never got going)
    return None


def _run(
    job: Job,
    journal: Journal,
    run_dir: Path,
    credentials: Credentials | None,
    ui: RunUI,
    transport: Any,
    retry: RetryPolicy | None,
) -> RunResult:
    """Confirm, send what is pending, and write the report."""
    with contextlib.ExitStack() as stack:
        stack.callback(journal.close)
        base_url, credentials, target = _target(job, credentials, stack)
        to_send = journal.pending_counts()
        plan = Plan(
            job=job,
            run_dir=run_dir,
            target=target,
            credential=credentials.describe() if credentials else "none (dry run)",
            counts=journal.counts(),
            to_send=to_send,
            dry_run=job.dry_run,
        )
        stopped: str | None = None
        sending = sum(to_send.values())
        if not ui.planned(plan):
            stopped = "cancelled at the confirmation prompt; nothing was sent"
        elif not job.dry_run and sending:
            assert credentials is not None
            ui.started(sending)
            stopped = asyncio.run(
                _send_all(job, journal, base_url, credentials, ui, transport, retry)
            )
        return _finish(job, journal, run_dir, plan, stopped)


def _target(
    job: Job, credentials: Credentials | None, stack: contextlib.ExitStack
) -> tuple[str, Credentials | None, str]:
    """Where requests go: (base URL, credential, description). Starts the built-in sandbox
    inside ``stack`` when the job asks for it. A dry run needs no credential."""
    if job.sandbox is not None and not job.dry_run:
        # Imported here: only runs against the built-in sandbox need its server stack.
        from pcxbatch.sandbox import SandboxConfig, start

        running = stack.enter_context(start(SandboxConfig(**job.sandbox)))
        base_url = running.base_url
        return base_url, Credentials(api_key=running.api_key), f"the built-in sandbox at {base_url}"
    if credentials is None and not job.dry_run:
        raise UnusableError(
            "no API credential: set PCX_API_KEY (or PCX_JWT), or name a credentials_file in the job"
        )
    return job.base_url, credentials, job.base_url


def _finish(
    job: Job, journal: Journal, run_dir: Path, plan: Plan, stopped: str | None
) -> RunResult:
    counts = journal.counts()
    exit_code = exit_code_for(counts, stopped)
    meta = journal.meta()
    problems: list[ReportLine] = []

    def noting_problems(lines: Iterator[ReportLine]) -> Iterator[ReportLine]:
        # The report is streamed; keep the first few problem rows to show on the terminal.
        for line in lines:
            if line.outcome in PROBLEMS and len(problems) < SHOW_PROBLEMS:
                problems.append(line)
            yield line

    files = write_results(
        run_dir,
        meta["columns"],
        noting_problems(journal.lines()),
        xlsx=job.input.suffix.lower() in (".xlsx", ".xlsm"),
    )
    finished = now_iso()
    if not counts[Outcome.NOT_ATTEMPTED.value]:
        journal.set_meta(state=STATE_FINISHED)
    summary: dict[str, Any] = {
        "job": job.name,
        "job_file": job.source,
        "run_id": run_dir.name,
        "previous_run": meta.get("previous_run"),
        "input": {
            "file": job.input.name,
            "sha256": meta["input_sha256"],
            "sheet": meta.get("sheet"),
        },
        "target": plan.target,
        "credential": plan.credential,
        "dry_run": job.dry_run,
        "started": meta["started"],
        "finished": finished,
        "counts": counts,
        **journal.totals(),
        "stopped": stopped,
        "exit_code": exit_code,
        **{k: meta[k] for k in ("plan", "plan_hash", "previewed_by", "applied_by") if k in meta},
        "pcxbatch_version": __version__,
    }
    if counts[Outcome.APPLIED.value]:
        files.extend(_write_undo(job, journal, run_dir))
    files.append(write_summary(run_dir, summary))
    return RunResult(run_dir, counts, exit_code, stopped, files, problems)


def _write_undo(job: Job, journal: Journal, run_dir: Path) -> list[Path]:
    """``undo.csv``: a file ``pcxbatch run`` takes to put every changed user back.

    Only an apply knows each user's status before the change (its preview read it). A plain
    run lists its changed users with the status left empty and says why, so that whoever must
    undo it knows whom, and can fill the column in from their own records.
    """
    reason = f"Undo of pcxbatch run {run_dir.name}"
    updated_by = job.updated_by or "pcxbatch-undo"
    unknown = (
        "the status before this run is unknown: a plain run does not read it first (pcxbatch"
        " preview + apply does); fill in the status to restore"
    )

    def rows() -> Iterator[UndoRow]:
        for line in journal.lines():
            if line.outcome is not Outcome.APPLIED:
                continue
            status, why = undo_status(line.seen_status) if line.seen_status else ("", unknown)
            yield UndoRow(line.user_id, status, reason, updated_by, why, line.row)

    return write_undo(run_dir, rows())


def _start_journal(
    journal: Journal,
    job: Job,
    *,
    sheet: str | None,
    columns: Sequence[str],
    input_sha256: str | None = None,
    previous_run: str | None = None,
    kind: str = KIND_RUN,
) -> None:
    journal.set_meta(
        state=STATE_PREPARING,
        kind=kind,
        job=job.name,
        job_settings=job_to_dict(job),
        fingerprint=fingerprint(job),
        input_sha256=input_sha256 or file_sha256(job.input),
        sheet=sheet,
        columns=list(columns),
        started=now_iso(),
        previous_run=previous_run,
        version=__version__,
    )


def _check_resumable(journal: Journal, job: Job, run_dir: Path) -> None:
    """Refuse to resume a run whose input file or job settings have changed since it began."""
    meta = journal.meta()
    if fingerprint(job) != meta["fingerprint"]:
        raise UnusableError(
            f"job '{job.name}' has an unfinished run in {run_dir} made with other settings"
            " (action, status, reason, updated_by, sheet, ID pattern or base URL); run with"
            " --fresh to start over, or restore the settings to finish it"
        )
    if meta.get("previous_run"):
        return  # a retry run's rows live in its journal, not in the input file
    try:
        digest = file_sha256(job.input)
    except InputError as exc:
        raise UnusableError(f"cannot resume {run_dir}: {exc}") from None
    if digest != meta["input_sha256"]:
        raise UnusableError(
            f"{job.input.name} has changed since the run in {run_dir} began, so that run cannot"
            " be resumed with it; restore the original file to finish it, or run with --fresh"
            " to start a new run on the new file"
        )


def _check_max_rows(job: Job, journal: Journal) -> None:
    sending = sum(journal.pending_counts().values())
    if job.max_rows is not None and sending > job.max_rows and not job.dry_run:
        raise InputError(
            f"{job.input.name}: {sending} rows would be sent, more than the job's max_rows"
            f" ({job.max_rows}); raise max_rows in the job (or --max-rows) if this is right"
        )


def stored_job(run_dir: Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """The job a run folder was made with, with flag overrides (for resume and retries)."""
    journal = _open_journal(run_dir)
    try:
        return job_from_dict(journal.meta()["job_settings"], overrides)
    finally:
        journal.close()


def _open_journal(run_dir: Path) -> Journal:
    path = run_dir / JOURNAL_NAME
    if not path.is_file():
        raise UnusableError(f"{run_dir}: not a pcxbatch run folder (no {JOURNAL_NAME})")
    return Journal(path)


def exit_code_for(counts: dict[str, int], stopped: str | None) -> int:
    """0 all applied/unchanged/planned; 1 some failed/invalid/duplicate; 3 stopped early."""
    if stopped or counts.get(Outcome.NOT_ATTEMPTED.value, 0):
        return StoppedError.exit_code
    bad = (Outcome.FAILED, Outcome.INVALID, Outcome.DUPLICATE)
    return 1 if any(counts.get(o.value, 0) for o in bad) else 0


async def _send_all(
    job: Job,
    journal: Journal,
    base_url: str,
    credentials: Credentials,
    ui: RunUI,
    transport: Any,
    retry: RetryPolicy | None,
) -> str | None:
    """Execute the pending rows; return why the run stopped early, or None."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reasons: list[str] = []

    def interrupt(name: str) -> None:
        if not stop.is_set():
            reasons.append(f"interrupted ({name})")
            ui.stopping(f"{name}: finishing the requests in flight, sending no more")
        stop.set()

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupt, sig.name)
            handled.append(sig)
    limiter = Limiter(job.rate, job.burst)
    client = PcxClient(
        base_url,
        credentials,
        limiter=limiter,
        retry=retry or RetryPolicy(max_attempts=job.max_attempts),
        transport=transport,
        max_connections=job.concurrency,
        id_pattern=job.id_pattern,
        allow_insecure_http=job.allow_insecure_http,
    )
    task = asyncio.create_task(
        execute(
            journal,
            client,
            concurrency=job.concurrency,
            stop=stop,
            on_result=ui.result,
            guard=FailureGuard(job.max_failure_rate, job.failure_window),
        )
    )
    try:
        await _wait_draining(task, stop)
    except StoppedError as exc:  # AuthError included
        reasons.append(str(exc))
        ui.stopping(str(exc))
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await client.aclose()
    return reasons[0] if reasons else None


async def _wait_draining(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Wait for ``task``; once ``stop`` is set, give in-flight requests a bounded time."""
    stop_wait = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            done, _ = await asyncio.wait({task}, timeout=DRAIN_SECONDS)
            if task not in done:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stop_wait.cancel()


def read_input(job: Job) -> Table:
    """The job's input table, under the job's size limit (``read``'s default when unset)."""
    if job.max_bytes is None:
        return read_table(job.input, sheet=job.sheet)
    return read_table(job.input, sheet=job.sheet, max_bytes=job.max_bytes)


def check_table(table: Table, job: Job) -> Iterator[Item]:
    """Every row of ``table`` checked under the job's defaults and ID pattern, in order."""
    columns = resolve_columns(table.columns, str(job.input))
    defaults = RowDefaults(job.action, job.status, job.reason, job.updated_by)
    return check_rows(table.rows, columns, defaults, id_pattern=job.id_pattern)


def _make_report_dir(job: Job) -> None:
    """Create the job's report folder (owner-only) if it is missing; a folder that cannot be
    used is the job's problem to fix (exit 2), not a traceback."""
    try:
        job.report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UnusableError(
            f"{job.report_dir}: cannot be used as the report folder: {exc.strerror or exc}"
        ) from None


def _new_run_dir(job: Job, suffix: str = "") -> Path:
    """A fresh, owner-only folder for this run; never another run's."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{job.name}" + (f"-{suffix}" if suffix else "")
    for n in range(1, 1000):
        path = job.report_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise UnusableError(f"{job.report_dir}: cannot create a new run folder")


@contextlib.contextmanager
def _lock(job: Job) -> Iterator[None]:
    """Hold an exclusive lock per job for the whole run (released by the kernel if we die)."""
    path = job.report_dir / f".{job.name}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another run of job '{job.name}' is in progress (lock: {path}); "
                "wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
