"""The five operations both faces (CLI and web) call: run, resume, retry, preview, apply.

In: a :class:`~pcxbatch.config.Job` (or a run folder, or a plan file) and a :class:`RunContext`:
the credential, where the run reports to (:class:`RunUI`), and the clock, operator, client
factory and async runner, each with a production default so tests can run the whole
orchestration in-process on a virtual clock. Out: a :class:`RunResult` or
:class:`PreviewResult` once the report is written in ``REPORT_DIR/<run-id>/``.

Each operation is the same short sequence: open the run folder (``runfolder``), check, record the
rows in the journal, execute, report. The stages do the work; this module only orders them.
It prints nothing: the ``cli`` (or ``web``) renders what the :class:`RunUI` receives.

Errors: :class:`~pcxbatch.errors.UnusableError` (nothing sent, no run folder left),
:class:`~pcxbatch.errors.LockedError`, and :class:`InternalError` for an unexpected failure
after rows were sent (the report is written as far as the journal holds, and the run stays
resumable). A run that sent nothing never leaves a folder behind when it fails or is declined.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch import __version__, runfolder, settle
from pcxbatch.config import Job, fingerprint, job_from_dict
from pcxbatch.context import Confirmation, PreviewResult, RunContext, RunResult, RunUI
from pcxbatch.errors import ExitCode, InputError, InternalError, UnusableError
from pcxbatch.model import Item, Outcome, ReportLine, RowDefaults
from pcxbatch.plan import (
    Tally,
    check_plan,
    classify,
    load_plan,
    plan_items,
    preview_plan,
    seal,
    undo_rows,
)
from pcxbatch.runfolder import KIND_APPLY, KIND_PREVIEW, RunFolder, job_lock

if TYPE_CHECKING:  # the client stack is imported when a run sends, not when the CLI starts
    from pcxbatch.client import PcxClient
    from pcxbatch.credentials import Credentials
    from pcxbatch.journal import Journal
    from pcxbatch.read import Table

#: Outcomes a person must look at, and how many of those rows the terminal lists.
PROBLEMS = frozenset({Outcome.FAILED, Outcome.INVALID, Outcome.DUPLICATE, Outcome.NOT_FOUND})
SHOW_PROBLEMS = 10


# --- the five operations -----------------------------------------------------------------------


def run_job(job: Job, ctx: RunContext, *, fresh: bool = False) -> RunResult:
    """Run ``job`` from its input to its report; resume its unfinished run unless ``fresh``.

    A resumed run needs the same input and job settings. An unreadable file or a missing column
    stops before any folder exists.
    """
    with job_lock(job):
        unfinished = None if fresh or job.dry_run else runfolder.find_unfinished(job)
        if unfinished is not None:
            folder = runfolder.open_folder(unfinished)
            with _closing_on_error(folder):
                runfolder.check_resumable(folder, job)
            ctx.ui.resuming(unfinished, folder.journal.counts()[Outcome.NOT_ATTEMPTED.value])
            return _run(job, folder, ctx, new=False)
        table = read_input(job)
        items = check_table(table, job)
        folder = runfolder.create(job, ctx.clock(), sheet=table.sheet, columns=table.columns)
        with _discarding_on_error(folder):
            folder.journal.add_items(items, planned=job.dry_run)
            _check_max_rows(job, folder.journal)
        folder.journal.set_meta(state=runfolder.STATE_READY)
        return _run(job, folder, ctx, new=True)


def resume_run(
    run_dir: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """Finish the run in ``run_dir``: send the rows that have no outcome yet, rewrite the report.

    Rows with an outcome are never sent again; rows sent without a recorded answer are sent again
    (the PUTs are idempotent). ``overrides`` may change pacing (rate, concurrency), not what is
    sent. A preview folder is refused: its plan is applied with ``apply``.
    """
    job = runfolder.stored_job(run_dir, overrides)
    with job_lock(job):
        folder = runfolder.open_folder(run_dir)
        with _closing_on_error(folder):
            _refuse_preview(folder)
            runfolder.check_resumable(folder, job)
        return _run(job, folder, ctx, new=False)


def retry_failed(
    old_run_dir: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """A new run, linked to ``old_run_dir``, of the rows it reported failed or not_attempted."""
    job = runfolder.stored_job(old_run_dir, overrides)
    with job_lock(job):
        with runfolder.open_folder(old_run_dir) as old:
            _refuse_preview(old)
            meta = old.meta
            folder = runfolder.create(
                job,
                ctx.clock(),
                sheet=meta.get("sheet"),
                columns=meta["columns"],
                input_sha256=meta["input_sha256"],
                previous_run=str(old_run_dir),
            )
            with _discarding_on_error(folder):
                wanted = (Outcome.FAILED, Outcome.NOT_ATTEMPTED)
                copied = folder.journal.import_rows(old.journal, wanted)
        state = runfolder.STATE_READY if copied else runfolder.STATE_FINISHED
        folder.journal.set_meta(state=state)
        return _run(job, folder, ctx, new=True)


def preview_job(job: Job, ctx: RunContext, *, plan_out: Path | None = None) -> PreviewResult:
    """Read the users' current status and classify every row; write the preview and plan.

    Sends no change: only ``GET /users/list`` pages, paced like any run. Writes
    ``preview.csv`` (and ``preview.xlsx`` for spreadsheet input) with the counts at the top, and
    the plan file (``plan.json`` in the preview's folder, or ``plan_out``).
    """
    from pcxbatch.report import atomic_write_text, write_preview

    with job_lock(job), contextlib.ExitStack() as stack:
        table = read_input(job)
        items = check_table(table, job)
        # A preview reads from the API even for a job marked dry_run: it never writes.
        base_url, credentials, target = _target(replace(job, dry_run=False), ctx, stack)
        assert credentials is not None
        folder = runfolder.create(
            job, ctx.clock(), kind=KIND_PREVIEW, sheet=table.sheet, columns=table.columns
        )
        stack.enter_context(_discarding_on_error(folder))
        stack.enter_context(folder)
        folder.journal.add_items(items)
        client = ctx.client_factory(job, base_url, credentials, connections=1)
        found = ctx.run_async(_read_states(client, job, folder.journal, ctx.ui))
        folder.journal.set_seen(found)
        folder.journal.set_meta(state=runfolder.STATE_FINISHED, target=target)
        tally = Tally()
        scope = f" of organisation {job.org_id}" if job.org_id else ""
        rows = [tally.add(r) for r in classify(folder.journal.lines(), scope=scope)]
        title = f"pcxbatch preview of {job.input.name} against {target} at {ctx.now_iso()}"
        columns, xlsx = folder.meta["columns"], _is_workbook(job)
        write_preview(
            folder.path, columns, rows, title=title, counts=tally.counts,
            transitions=tally.transitions, xlsx=xlsx,
        )  # fmt: skip
        plan = preview_plan(
            job,
            folder.meta,
            target=target,
            previewed_by=ctx.operator,
            previewed_with=credentials.describe(),
            previewed_at=ctx.now_iso(),
            preview_dir=folder.path,
            counts=tally.counts,
            rows=rows,
        )
        text, digest = seal(plan)
        plan_path = plan_out or folder.path / "plan.json"
        atomic_write_text(plan_path, text)
        code = ExitCode.FILE_PROBLEMS if tally.file_problems else ExitCode.OK
        return PreviewResult(
            folder.path, plan_path, digest, target, dict(tally.counts), tally.transitions, code,
            tally.problems,
        )  # fmt: skip


def apply_plan(
    plan_path: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """Send exactly a reviewed plan's ``will_change`` rows, after checking the plan still holds.

    Refuses (:class:`UnusableError`, nothing sent) a plan that was altered, whose input file
    changed, that is older than the job's ``max_plan_age_hours``, or, when the job requires a
    second person, that the applier previewed. Rows already in their wanted state or not found
    at the preview are reported without a request. Writes ``undo.csv`` beside the report.
    """
    plan = load_plan(plan_path)
    job = job_from_dict(plan.job, overrides)
    digest = check_plan(
        plan,
        plan_path,
        fingerprint(job),
        max_age=timedelta(hours=job.max_plan_age_hours),
        now=ctx.clock(),
        applier=ctx.operator,
    )
    with job_lock(job):
        folder = runfolder.create(
            job,
            ctx.clock(),
            kind=KIND_APPLY,
            sheet=plan.input["sheet"],
            columns=plan.columns,
            input_sha256=digest,
            plan=str(plan_path),
            plan_hash=plan.hash,
            previewed_by=plan.previewed_by,
            previewed_at=plan.previewed_at,
            applied_by=ctx.operator,
        )
        with _discarding_on_error(folder):
            folder.journal.add_items(plan_items(plan), planned=False)
            folder.journal.set_seen({r.user_id: r.seen_status for r in plan.rows if r.seen_status})
        folder.journal.set_meta(state=runfolder.STATE_READY)
        return _run(job, folder, ctx, new=True)


# --- shared by the operations ------------------------------------------------------------------


def read_input(job: Job) -> Table:
    """The job's input table, under the job's size limit (``read``'s default when unset)."""
    from pcxbatch.read import read_table

    if job.max_bytes is None:
        return read_table(job.input, sheet=job.sheet)
    return read_table(job.input, sheet=job.sheet, max_bytes=job.max_bytes)


def check_table(table: Table, job: Job) -> Iterator[Item]:
    """Every row of ``table`` checked under the job's defaults and ID pattern, in order.

    The columns are resolved at once (a missing user ID column raises here); rows lazily.
    """
    from pcxbatch.validate import check_rows, resolve_columns

    columns = resolve_columns(table.columns, str(job.input))
    defaults = RowDefaults(job.action, job.status, job.reason, job.updated_by)
    return check_rows(table.rows, columns, defaults, id_pattern=job.id_pattern)


def exit_code_for(counts: Mapping[str, int], stopped: str | None, unconfirmed: int = 0) -> ExitCode:
    """The run's exit code from its counts and unconfirmed rows (see :class:`ExitCode`)."""
    if stopped or counts.get(Outcome.NOT_ATTEMPTED.value, 0):
        return ExitCode.STOPPED
    if counts.get(Outcome.FAILED.value, 0) or unconfirmed:
        return ExitCode.FAILED_ROWS
    if any(counts.get(o, 0) for o in (Outcome.INVALID, Outcome.DUPLICATE, Outcome.NOT_FOUND)):
        return ExitCode.FILE_PROBLEMS
    return ExitCode.OK


def _refuse_preview(folder: RunFolder) -> None:
    if folder.meta.get("kind") == KIND_PREVIEW:
        raise UnusableError(
            f"{folder.path} is a preview, not a run: nothing of it can be sent again; apply its"
            " plan with pcxbatch apply PLAN (or preview again)"
        )


def _check_max_rows(job: Job, journal: Journal) -> None:
    sending = sum(journal.pending_counts().values())
    if job.max_rows is not None and sending > job.max_rows and not job.dry_run:
        raise InputError(
            f"{job.input.name}: {sending} rows would be sent, more than the job's max_rows"
            f" ({job.max_rows}); raise max_rows in the job (or --max-rows) if this is right"
        )


def _is_workbook(job: Job) -> bool:
    return job.input.suffix.lower() in (".xlsx", ".xlsm")


@contextlib.contextmanager
def _closing_on_error(folder: RunFolder) -> Iterator[None]:
    try:
        yield
    except BaseException:
        folder.journal.close()
        raise


@contextlib.contextmanager
def _discarding_on_error(folder: RunFolder) -> Iterator[None]:
    """A failure before anything was sent leaves no folder behind (nothing to resume)."""
    try:
        yield
    except BaseException:
        folder.discard()
        raise


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
        return base_url, Credentials(api_key=running.api_key), f"the built-in sandbox at {base_url}"
    if ctx.credentials is None and not job.dry_run:
        raise UnusableError(
            "no API credential: set PCX_API_KEY (or PCX_JWT), or name a credentials_file in the job"
        )
    return job.base_url, ctx.credentials, job.base_url


# --- one run: confirm, send, report --------------------------------------------------------------


def _run(job: Job, folder: RunFolder, ctx: RunContext, *, new: bool) -> RunResult:
    """Confirm, send what is pending, and write the report. ``new``: this call made the folder,
    so it is removed again when nothing was sent and the run cannot go on."""
    with folder, contextlib.ExitStack() as stack:
        try:
            base_url, credentials, target = _target(job, ctx, stack)
            confirmation = _confirmation(job, folder, target, credentials)
            if not ctx.ui.planned(confirmation):
                return _declined(folder, new=new)
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
                # Reads before and after the sends: pcxbatch.settle, README "What each answer means"
                stopped = settle.before_sending(job, folder.journal, ctx, base_url, credentials)
                if stopped is None and folder.journal.pending_counts():
                    client = ctx.client_factory(
                        job, base_url, credentials, connections=job.concurrency
                    )
                    stopped = ctx.run_async(_send_all(job, folder.journal, client, ctx.ui))
                stopped = stopped or settle.after_sending(
                    job, folder.journal, ctx, base_url, credentials
                )
            except Exception as exc:
                if new and not folder.journal.sent_any():
                    folder.discard()
                    raise
                _finish(job, folder, confirmation, f"internal error: {exc}", ctx)
                raise InternalError(
                    f"internal error while sending ({type(exc).__name__}: {exc}); the report"
                    f" in {folder.path} holds what was done; to finish:"
                    f" pcxbatch resume {folder.path}",
                    folder.path,
                ) from exc
        return _finish(job, folder, confirmation, stopped, ctx)


def _confirmation(
    job: Job, folder: RunFolder, target: str, credentials: Credentials | None
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
    job: Job, folder: RunFolder, plan: Confirmation, stopped: str | None, ctx: RunContext
) -> RunResult:
    """Write results, undo file and summary; mark the run finished when every row is done."""
    from pcxbatch.report import write_results, write_summary

    journal = folder.journal
    counts = journal.counts()
    exit_code = exit_code_for(counts, stopped, journal.unconfirmed())
    meta = folder.meta
    problems: list[ReportLine] = []

    def noting_problems(lines: Iterator[ReportLine]) -> Iterator[ReportLine]:
        # The report is streamed; keep the first few problem rows to show on the terminal.
        for line in lines:
            if (line.outcome in PROBLEMS or not line.confirmed) and len(problems) < SHOW_PROBLEMS:
                problems.append(line)
            yield line

    files = write_results(
        folder.path, meta["columns"], noting_problems(journal.lines()), xlsx=_is_workbook(job)
    )
    if not counts[Outcome.NOT_ATTEMPTED.value] and not journal.open_count():  # none to settle
        journal.set_meta(state=runfolder.STATE_FINISHED)
    if counts[Outcome.APPLIED.value]:
        files.extend(_write_undo(job, journal, folder.path))
    summary = {**_summary(job, folder, plan, counts, stopped, exit_code, ctx)}
    summary.update(settle.summary_fields(journal))
    files.append(write_summary(folder.path, summary))
    return RunResult(folder.path, counts, exit_code, stopped, files, problems)


def _summary(
    job: Job,
    folder: RunFolder,
    plan: Confirmation,
    counts: dict[str, int],
    stopped: str | None,
    exit_code: ExitCode,
    ctx: RunContext,
) -> dict[str, Any]:
    meta = folder.meta
    return {
        "job": job.name,
        "job_file": job.source,
        "run_id": folder.path.name,
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
        "finished": ctx.now_iso(),
        "counts": counts,
        **folder.journal.totals(),
        "stopped": stopped,
        "exit_code": int(exit_code),
        **{k: meta[k] for k in ("plan", "plan_hash", "previewed_by", "applied_by") if k in meta},
        "pcxbatch_version": __version__,
    }


def _write_undo(job: Job, journal: Journal, run_dir: Path) -> list[Path]:
    """``undo.csv``: a file ``pcxbatch run`` takes to put every changed user back."""
    from pcxbatch.report import write_undo

    reason = f"Undo of pcxbatch run {run_dir.name}"
    return write_undo(run_dir, undo_rows(journal.lines(), reason, job.updated_by))


# --- sending -------------------------------------------------------------------------------------


async def _read_states(client: PcxClient, job: Job, journal: Journal, ui: RunUI) -> dict[str, str]:
    """The current status of every pending row's user that exists (a preview's one read)."""
    from pcxbatch.plan import read_states

    wanted = journal.pending_user_ids()
    try:
        if not wanted:
            return {}
        found, _pages = await read_states(
            client, wanted, org_id=job.org_id, page_size=job.list_page_size, on_page=ui.listing
        )
        return found
    finally:
        await client.aclose()


async def _send_all(job: Job, journal: Journal, client: PcxClient, ui: RunUI) -> str | None:
    """Execute the pending rows through ``client`` (closed after); why the run stopped, or None."""
    from pcxbatch.execute import FailureGuard, send_pending

    try:
        return await send_pending(
            journal,
            client,
            concurrency=job.concurrency,
            guard=FailureGuard(job.max_failure_rate, job.failure_window),
            on_result=ui.result,
            on_stopping=ui.stopping,
        )
    finally:
        await client.aclose()
