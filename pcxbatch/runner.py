"""The operations both faces (CLI and web) call: run, resume, retry, abandon, preview, apply.

In: a :class:`~pcxbatch.config.Job` (or a run folder, or a plan file) and a :class:`RunContext`:
the credential, where the run reports to (:class:`RunUI`), and the clock, operator, client
factory and async runner, each with a production default so tests can run the whole
orchestration in-process on a virtual clock. Out: a :class:`RunResult` or
:class:`PreviewResult` once the report is written in ``REPORT_DIR/<run-id>/``.

Each operation is the same short sequence: open the run folder (``runfolder``), check
(``intake``), record the rows in the journal, execute, report. The stages do the work; this
module only orders them. Preview and apply live in ``review`` (with the record of applied plans
in ``applying``); the run itself, confirm, send, report, is here. It prints nothing: the ``cli``
(or ``web``) renders what the :class:`RunUI` receives.

Errors: :class:`~pcxbatch.errors.UnusableError` (nothing sent, no run folder left),
:class:`~pcxbatch.errors.LockedError`, :class:`~pcxbatch.errors.StoppedError` when the disk
refused something after rows were sent (full, read-only), and :class:`InternalError` for an
unexpected failure after rows were sent (in both, the report is written as far as the journal
holds, and the run stays resumable). A run that sent nothing never leaves a folder behind when
it fails or is declined.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch import applying, auditing, facts, reportdir, runfolder, settle
from pcxbatch.audit.runs import RowsDigest
from pcxbatch.config import Job
from pcxbatch.context import (
    Confirmation,
    PlanFacts,
    PreviewResult,
    RunContext,
    RunResult,
    RunUI,
)
from pcxbatch.errors import ExitCode, InternalError, StoppedError
from pcxbatch.intake import (
    check_max_rows,
    check_table,
    closing_on_error,
    discarding_on_error,
    read_input,
    refuse_preview,
    require_credential,
)
from pcxbatch.model import Outcome, ReportLine
from pcxbatch.plan import undo_rows
from pcxbatch.preflight import check_api
from pcxbatch.read import file_sha256
from pcxbatch.reportdir import environment_problem
from pcxbatch.runfolder import RunFolder, UnfinishedRun, job_lock

if TYPE_CHECKING:  # the client stack is imported when a run sends, not when the CLI starts
    from pcxbatch.client import PcxClient
    from pcxbatch.credentials import Credentials
    from pcxbatch.journal import Journal

__all__ = [
    "abandon_run",
    "apply_plan",
    "check_table",
    "exit_code_for",
    "preview_job",
    "read_input",
    "resume_run",
    "retry_failed",
    "run_job",
]

#: Outcomes a person must look at, and how many of those rows the terminal lists.
PROBLEMS = frozenset({Outcome.FAILED, Outcome.INVALID, Outcome.DUPLICATE, Outcome.NOT_FOUND})
SHOW_PROBLEMS = 10


# --- the operations -----------------------------------------------------------------------------


def run_job(job: Job, ctx: RunContext, *, fresh: bool = False) -> RunResult:
    """Run ``job`` from its input to its report; resume its unfinished run of the same input.

    An unfinished run is picked up when the input file and the sending settings are the ones it
    began with (unless ``fresh``). Any other unfinished run of the job (last night's, stopped,
    before tonight's export replaced the file) is left as it is: this run starts anew, the UI
    is told which runs are left and how old they are, and the exit code says a person is needed
    (:attr:`ExitCode.STOPPED`) for as long as one exists. Dry runs neither resume nor displace
    one. An unreadable file or a missing column stops before any folder exists.
    """
    job = runfolder.settled(job)
    require_credential(job, ctx)
    with job_lock(job):
        digest = file_sha256(job.input)
        unfinished = [] if job.dry_run else runfolder.find_unfinished(job, ctx.clock())
        match = None
        if not fresh:
            match = next((u for u in unfinished if runfolder.resumes_with(u, job, digest)), None)
        others = [u for u in unfinished if u is not match]
        if others:
            ctx.ui.left_unfinished(others)
        if match is not None:
            ctx.ui.resuming(match)
            return _run(job, runfolder.open_folder(match.path), ctx, new=False, unfinished=others)
        table = read_input(job)
        items = check_table(table, job)
        folder = runfolder.create(
            job,
            ctx.clock(),
            sheet=table.sheet,
            columns=table.columns,
            input_sha256=digest,
            skipped_rows=list(table.skipped_rows),
        )
        with discarding_on_error(folder):
            folder.journal.add_items(items, planned=job.dry_run)
            check_max_rows(job, folder.journal)
        folder.journal.set_meta(state=runfolder.STATE_READY)
        return _run(job, folder, ctx, new=True, unfinished=others)


def resume_run(
    run_dir: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """Finish the run in ``run_dir``: send the rows that have no outcome yet, rewrite the report.

    Rows with an outcome are never sent again; rows sent without a recorded answer are sent again
    (the PUTs are idempotent). The rows are the journal's, as read when the run began: the input
    file is not read again. ``overrides`` may change pacing (rate, concurrency), never what is
    sent or where (``runfolder.check_resumable``). A preview folder is refused: its plan is
    applied with ``apply``.
    """
    run_dir = reportdir.settle(run_dir)
    job = runfolder.stored_job(run_dir, overrides)
    require_credential(job, ctx)
    with job_lock(job):
        folder = runfolder.open_folder(run_dir)
        with closing_on_error(folder):
            refuse_preview(folder)
            runfolder.check_resumable(folder, job)
            applying.check_resume_applier(folder.meta, job, ctx.operator)
            ctx.ui.resuming(runfolder.unfinished_run(folder, ctx.clock()))
        return _run(job, folder, ctx, new=False, plan=applying.facts_of(folder.meta))


def retry_failed(
    old_run_dir: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """A new run, linked to ``old_run_dir``, of the rows it reported failed or not_attempted.

    Nothing to retry: no folder, exit 0, and a note saying so. An unfinished old run hands its
    unsent rows to the new run, so it is no longer an unfinished run of its own.
    """
    old_run_dir = reportdir.settle(old_run_dir)
    job = runfolder.stored_job(old_run_dir, overrides)
    require_credential(job, ctx)
    wanted = (Outcome.FAILED, Outcome.NOT_ATTEMPTED)
    with job_lock(job):
        with runfolder.open_folder(old_run_dir) as old:
            refuse_preview(old)
            meta, counts = old.meta, old.journal.counts()
            if not sum(counts[o.value] for o in wanted):
                note = f"nothing to retry: {old_run_dir} has no failed or not_attempted rows"
                return RunResult(None, {}, ExitCode.OK, note=note)
            folder = runfolder.create(
                job,
                ctx.clock(),
                sheet=meta.get("sheet"),
                columns=meta["columns"],
                input_sha256=meta["input_sha256"],
                previous_run=str(old_run_dir),
            )
            with discarding_on_error(folder):
                folder.journal.import_rows(old.journal, wanted)
            folder.journal.set_meta(state=runfolder.STATE_READY)
            handing_over = meta.get("state") == runfolder.STATE_READY
            if handing_over:  # its unsent rows are the new run's now
                old.journal.set_meta(
                    state=runfolder.STATE_ABANDONED, superseded_by=str(folder.path)
                )
        try:
            return _run(job, folder, ctx, new=True)
        finally:
            if handing_over and not folder.path.exists():  # declined, or failed before sending
                with runfolder.open_folder(old_run_dir) as old:
                    old.journal.set_meta(state=runfolder.STATE_READY, superseded_by=None)


def abandon_run(run_dir: Path, ctx: RunContext) -> RunResult:
    """Close an unfinished run without sending the rest: its report is written with those rows
    ``not_attempted``, and later runs no longer name it as unfinished."""
    run_dir = reportdir.settle(run_dir)
    job = runfolder.stored_job(run_dir)
    with job_lock(job), runfolder.open_folder(run_dir) as folder:
        refuse_preview(folder)
        if folder.meta.get("state") != runfolder.STATE_READY:
            note = f"{run_dir} is not an unfinished run (state: {folder.meta.get('state')})"
            return RunResult(run_dir, folder.journal.counts(), ExitCode.OK, note=note)
        left = folder.journal.counts()[Outcome.NOT_ATTEMPTED.value]
        confirmation = _confirmation(job, folder, job.base_url, None)
        result = _finish(
            job, folder, confirmation, f"abandoned by {ctx.operator}", ctx, (), cancelled=True
        )
        folder.journal.set_meta(
            state=runfolder.STATE_ABANDONED, abandoned_by=ctx.operator, abandoned_at=ctx.now_iso()
        )
    note = f"abandoned: {left} row(s) stay not_attempted; later runs no longer name {run_dir}"
    return replace(result, exit_code=ExitCode.OK, note=note)


def preview_job(job: Job, ctx: RunContext, *, plan_out: Path | None = None) -> PreviewResult:
    """Read the users' current status and classify every row; write the preview and its plan
    (:func:`pcxbatch.review.preview_job`)."""
    from pcxbatch.review import preview_job as preview

    return preview(job, ctx, plan_out=plan_out)


def apply_plan(
    plan_path: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """Send exactly a reviewed plan's changes, once, to the API it was previewed against
    (:func:`pcxbatch.review.apply_plan`)."""
    from pcxbatch.review import apply_plan as apply

    return apply(plan_path, ctx, overrides)


# --- shared by the operations ------------------------------------------------------------------


def exit_code_for(
    counts: Mapping[str, int], stopped: str | None, unfinished: int = 0, unconfirmed: int = 0
) -> ExitCode:
    """The run's exit code from its counts and unconfirmed rows (see
    :class:`~pcxbatch.errors.ExitCode`); older runs left unfinished need a person as much as
    this run's own unsent rows."""
    if stopped or counts.get(Outcome.NOT_ATTEMPTED.value, 0) or unfinished:
        return ExitCode.STOPPED
    if counts.get(Outcome.FAILED.value, 0) or unconfirmed:
        return ExitCode.FAILED_ROWS
    if any(counts.get(o, 0) for o in (Outcome.INVALID, Outcome.DUPLICATE, Outcome.NOT_FOUND)):
        return ExitCode.FILE_PROBLEMS
    return ExitCode.OK


def _target(
    job: Job, ctx: RunContext, stack: contextlib.ExitStack
) -> tuple[str, Credentials | None, str]:
    """Where requests go: (base URL, credential, description). Starts the built-in sandbox
    inside ``stack`` when the job asks for it. A dry run needs no credential."""
    if job.sandbox is not None and not job.dry_run:
        # Imported here: only runs against the built-in sandbox need its server stack.
        from pcxbatch.credentials import Credentials
        from pcxbatch.sandbox import SandboxConfig, start

        running = stack.enter_context(start(SandboxConfig(**job.sandbox)))
        base_url = running.base_url
        return base_url, Credentials(api_key=running.api_key), f"{facts.SANDBOX_AT}{base_url}"
    require_credential(job, ctx)
    return job.base_url, ctx.credentials, job.base_url


# --- one run: confirm, send, report --------------------------------------------------------------


def _run(
    job: Job,
    folder: RunFolder,
    ctx: RunContext,
    *,
    new: bool,
    unfinished: Sequence[UnfinishedRun] = (),
    plan: PlanFacts | None = None,
) -> RunResult:
    """Confirm, send what is pending, and write the report. ``new``: this call made the folder,
    so it is removed again when nothing was sent and the run cannot go on. ``unfinished``:
    older runs of the job left as they are (the exit code says so); ``plan``: an apply's."""
    with folder, contextlib.ExitStack() as stack:
        try:
            base_url, credentials, target = _target(job, ctx, stack)
            confirmation = _confirmation(job, folder, target, credentials, plan)
            if not ctx.ui.planned(confirmation):
                auditing.declined(job, folder, ctx)
                return _declined(folder, new=new)
            # Before any PUT; a key that may not list users means no reads (``settle``).
            checked = check_api(job, base_url, credentials, ctx, confirmation.to_send)
            auditing.opened(job, folder, ctx, confirmation, new=new)  # then, nothing unrecorded
        except BaseException:
            if new:
                folder.discard()
            raise
        stopped: str | None = None
        sending = sum(confirmation.to_send.values())
        if not job.dry_run and (sending or folder.journal.open_count()):
            assert credentials is not None
            ctx.ui.started(sending)
            try:
                reads = checked is None or checked.can_read
                stopped = _send_and_settle(job, folder.journal, ctx, base_url, credentials, reads)
            except Exception as exc:
                if new and not _sent_any(folder):
                    folder.discard()
                    raise
                with contextlib.suppress(Exception):  # the journal holds it even if this fails
                    _finish(job, folder, confirmation, f"stopped by an error: {exc}", ctx, ())
                raise _after_sends(exc, folder) from exc
        try:
            return _finish(job, folder, confirmation, stopped, ctx, unfinished)
        except Exception as exc:
            problem = environment_problem(exc)
            if problem is None:
                raise
            raise StoppedError(
                f"the report in {folder.path} could not be written: {problem}. The journal holds"
                f" every answer; once that is fixed, pcxbatch resume {folder.path} writes it"
            ) from None


def _send_and_settle(
    job: Job,
    journal: Journal,
    ctx: RunContext,
    base_url: str,
    credentials: Credentials,
    can_read: bool,
) -> str | None:
    """Read before the sends, send, settle the open answers (``settle``; README "What each
    answer means"); why the run stopped, or None. ``can_read`` False: the key may not list
    users, so nothing is read and open rows stay open, both possibilities reported."""
    stopped = settle.before_sending(job, journal, ctx, base_url, credentials, can_read=can_read)
    if stopped is None and journal.pending_counts():
        client = ctx.client_factory(job, base_url, credentials, connections=job.concurrency)
        stopped = ctx.run_async(_send_all(job, journal, client, ctx.ui, ctx.on_interruptible))
    return stopped or settle.after_sending(
        job, journal, ctx, base_url, credentials, can_read=can_read
    )


def _sent_any(folder: RunFolder) -> bool:
    try:
        return folder.journal.sent_any()
    except Exception:  # a journal that cannot be read may hold sends: keep the folder
        return True


def _after_sends(exc: Exception, folder: RunFolder) -> Exception:
    """The error that ends a run whose sending failed after rows went out: the disk's problem
    (exit 3, resumable once fixed), or a bug (exit 70). Either way the run stays resumable."""
    problem = environment_problem(exc)
    if problem is not None:
        return StoppedError(
            f"the run stopped: {problem}. The journal in {folder.path} holds every answer"
            f" recorded; once that is fixed, finish it: pcxbatch resume {folder.path}"
        )
    return InternalError(
        f"internal error while sending ({type(exc).__name__}: {exc}); the report"
        f" in {folder.path} holds what was done; to finish:"
        f" pcxbatch resume {folder.path}",
        folder.path,
    )


def _confirmation(
    job: Job,
    folder: RunFolder,
    target: str,
    credentials: Credentials | None,
    plan: PlanFacts | None = None,
) -> Confirmation:
    return Confirmation(
        job=job,
        run_dir=folder.path,
        target=target,
        credential=credentials.describe() if credentials else "none (dry run)",
        counts=folder.journal.counts(),
        to_send=folder.journal.pending_counts(),
        dry_run=job.dry_run,
        sheet=folder.meta.get("sheet"),
        plan=plan,
    )


def _declined(folder: RunFolder, *, new: bool) -> RunResult:
    """Declined at the prompt: nothing sent; a new folder goes, an unfinished run stays."""
    counts = folder.journal.counts()
    if new:
        folder.discard()
        return RunResult(None, counts, ExitCode.DECLINED, "declined; nothing was sent")
    return RunResult(
        folder.path,
        counts,
        ExitCode.DECLINED,
        f"declined; nothing was sent; the unfinished run stays in {folder.path}",
    )


def _finish(
    job: Job,
    folder: RunFolder,
    plan: Confirmation,
    stopped: str | None,
    ctx: RunContext,
    unfinished: Sequence[UnfinishedRun],
    *,
    cancelled: bool = False,
) -> RunResult:
    """Write results, undo file and summary; mark the run finished when every row is done;
    record it in the audit log (``cancelled``: a person abandoned it)."""
    from pcxbatch.report import write_results, write_summary

    journal = folder.journal
    counts = journal.counts()
    exit_code = exit_code_for(counts, stopped, len(unfinished), journal.unconfirmed())
    meta = folder.meta
    problems: list[ReportLine] = []
    rows = RowsDigest()  # the audit log's digest of the rows, from the report's one reading

    def noting_problems(lines: Iterator[ReportLine]) -> Iterator[ReportLine]:
        # The report is streamed; keep the first few problem rows to show on the terminal.
        for line in lines:
            rows.add(line)
            if (line.outcome in PROBLEMS or not line.confirmed) and len(problems) < SHOW_PROBLEMS:
                problems.append(line)
            yield line

    # One dict for summary.json and the workbook's Summary sheet, completed by write_results.
    summary = facts.run_summary(job, folder, plan, counts, stopped, exit_code, ctx)
    summary["unfinished_runs"] = [str(u.path) for u in unfinished]
    summary.update(settle.summary_fields(journal))
    with runfolder.earlier_runs(folder) as earlier:
        files = write_results(
            folder.path, meta["columns"], noting_problems(journal.lines()), xlsx=True,
            summary=summary, earlier=earlier,
        )  # fmt: skip
    if not counts[Outcome.NOT_ATTEMPTED.value] and not journal.open_count():  # none to settle
        journal.set_meta(state=runfolder.STATE_FINISHED)
    if counts[Outcome.APPLIED.value]:
        files.extend(_write_undo(job, journal, folder.path))
    files.append(write_summary(folder.path, summary))
    auditing.closed(
        job, folder, ctx, counts=counts, exit_code=exit_code, stopped=stopped, files=files,
        journal=rows.of(folder.path.name), cancelled=cancelled,
    )  # fmt: skip
    return RunResult(
        folder.path, counts, exit_code, stopped, files, problems, unfinished=list(unfinished)
    )


def _write_undo(job: Job, journal: Journal, run_dir: Path) -> list[Path]:
    """``undo.csv``: a file ``pcxbatch run`` takes to put every changed user back."""
    from pcxbatch.report import write_undo

    reason = f"Undo of pcxbatch run {run_dir.name}"
    return write_undo(run_dir, undo_rows(journal.lines(), reason, job.updated_by))


# --- sending -------------------------------------------------------------------------------------


async def _send_all(
    job: Job,
    journal: Journal,
    client: PcxClient,
    ui: RunUI,
    on_interruptible: Callable[[Callable[[str], None]], None] | None = None,
) -> str | None:
    """Execute the pending rows through ``client`` (closed after); why the run stopped, or None."""
    from pcxbatch.execute import FailureGuard, send_pending

    async with client:
        return await send_pending(
            journal,
            client,
            concurrency=job.concurrency,
            guard=FailureGuard(job.max_failure_rate, job.failure_window, job.give_up_after),
            on_result=ui.result,
            on_stopping=ui.stopping,
            on_notice=ui.notice,
            on_interruptible=on_interruptible,
        )
