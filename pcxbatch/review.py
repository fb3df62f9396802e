"""The reviewed-plan operations: preview a job against the API, and apply its plan once.

In: a :class:`~pcxbatch.config.Job` (preview) or a plan file (apply), and a
:class:`~pcxbatch.context.RunContext`. Out: a :class:`~pcxbatch.context.PreviewResult` once
``preview.csv``/``.xlsx`` and the sealed plan are written, or a
:class:`~pcxbatch.context.RunResult` once the apply's report is written. ``runner`` offers both
among its operations; the run itself (confirm, send, report) is ``runner``'s.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch import applying, auditing, facts, runfolder
from pcxbatch.config import Job, job_from_dict
from pcxbatch.context import PreviewResult, RunContext, RunResult, RunUI
from pcxbatch.errors import ExitCode
from pcxbatch.intake import (
    check_max_rows,
    check_table,
    closing_on_error,
    discarding_on_error,
    read_input,
    require_credential,
)
from pcxbatch.plan import (
    Tally,
    check_plan,
    check_second_person,
    check_target,
    classify,
    load_plan,
    plan_items,
    preview_plan,
    seal,
)
from pcxbatch.preflight import check_api
from pcxbatch.runfolder import KIND_APPLY, KIND_PREVIEW, job_lock
from pcxbatch.runner import _run, _target

if TYPE_CHECKING:
    from pcxbatch.client import PcxClient
    from pcxbatch.journal import Journal


def preview_job(job: Job, ctx: RunContext, *, plan_out: Path | None = None) -> PreviewResult:
    """Read the users' current status and classify every row; write the preview and plan.

    Sends no change: only ``GET /users/list`` pages, paced like any run. Writes
    ``preview.csv`` (the counts at the top) and ``preview.xlsx`` (a Summary sheet), and the
    plan file (``plan.json`` in the preview's folder, or ``plan_out``). A file with more rows
    to change than ``max_rows`` is refused, as a run would refuse it.
    """
    from pcxbatch.report import atomic_write_text, write_preview

    job = runfolder.settled(job)
    with job_lock(job), contextlib.ExitStack() as stack:
        table = read_input(job)
        items = check_table(table, job)
        # A preview reads from the API even for a job marked dry_run: it never writes.
        base_url, credentials, target = _target(replace(job, dry_run=False), ctx, stack)
        assert credentials is not None
        folder = runfolder.create(
            job, ctx.clock(), kind=KIND_PREVIEW, sheet=table.sheet, columns=table.columns
        )
        stack.enter_context(discarding_on_error(folder))
        stack.enter_context(folder)
        folder.journal.add_items(items)
        check_max_rows(job, folder.journal)
        check_api(job, base_url, credentials, ctx)  # it must read (its folder goes if not)
        client = ctx.client_factory(job, base_url, credentials, connections=1)
        found = ctx.run_async(_read_states(client, job, folder.journal, ctx.ui))
        folder.journal.set_seen(found)
        folder.journal.set_meta(state=runfolder.STATE_FINISHED, target=target)
        tally = Tally()
        scope = f" of organisation {job.org_id}" if job.org_id else ""
        rows = [tally.add(r) for r in classify(folder.journal.lines(), scope=scope)]
        title = f"pcxbatch preview of {job.input.name} against {target} at {ctx.now_iso()}"
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
        plan_path = Path(os.path.abspath(plan_out or folder.path / "plan.json"))
        files = write_preview(
            folder.path, folder.meta["columns"], rows, title=title, counts=tally.counts,
            transitions=tally.transitions, xlsx=True,
            summary=facts.preview_summary(job, folder, plan, plan_path, digest),
        )  # fmt: skip
        atomic_write_text(plan_path, text)
        auditing.previewed(job, folder, ctx, digest, plan_path, tally.counts, files)
        code = ExitCode.FILE_PROBLEMS if tally.file_problems else ExitCode.OK
        return PreviewResult(
            folder.path, plan_path, digest, target, dict(tally.counts), tally.transitions, code,
            tally.problems,
        )  # fmt: skip


def apply_plan(
    plan_path: Path, ctx: RunContext, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """Send exactly a reviewed plan's ``will_change`` rows, once, to the API it was previewed
    against (the record of applies: ``applying``).

    Refuses (:class:`UnusableError`, nothing sent) a plan that was altered, whose target or
    sending settings differ, whose input file changed, that is older than the job's
    ``max_plan_age_hours``, or, when the job requires a second person, that the applier
    previewed. A plan whose apply already finished is refused, naming that run; one whose apply
    stopped (killed, interrupted) resumes that run instead of sending it all again. The record
    is kept in the report folder's root (``reportdir.record_apply``). Rows already in their
    wanted state or not found at the preview are reported without a request. Writes
    ``undo.csv`` beside the report.
    """
    plan_path = Path(os.path.abspath(plan_path))
    plan = load_plan(plan_path)
    job = runfolder.settled(job_from_dict(plan.job, overrides))
    check_target(plan, plan_path, job)
    check_second_person(plan, ctx.operator)
    require_credential(job, ctx)
    facts = applying.facts(plan)
    with job_lock(job) as reports:
        earlier = applying.earlier_apply(plan, reports)
        if earlier is not None:
            folder = runfolder.open_folder(earlier)
            with closing_on_error(folder):
                runfolder.check_resumable(folder, job)
                ctx.ui.resuming(runfolder.unfinished_run(folder, ctx.clock()))
            return _run(job, folder, ctx, new=False, plan=facts)
        source, digest = check_plan(
            plan,
            plan_path,
            job,
            max_age=timedelta(hours=job.max_plan_age_hours),
            now=ctx.clock(),
            applier=ctx.operator,
        )
        job = replace(job, input=source)
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
            previewed_against=plan.target,
            applied_by=ctx.operator,
        )
        with applying.recorded(plan, reports, folder, ctx):
            with discarding_on_error(folder):
                folder.journal.add_items(plan_items(plan), planned=False)
                seen = {r.user_id: r.seen_status for r in plan.rows if r.seen_status}
                folder.journal.set_seen(seen)
            folder.journal.set_meta(state=runfolder.STATE_READY)
            return _run(job, folder, ctx, new=True, plan=facts)


async def _read_states(client: PcxClient, job: Job, journal: Journal, ui: RunUI) -> dict[str, str]:
    """The current status of every pending row's user that exists (a preview's one read)."""
    from pcxbatch.listing import read_states

    wanted = journal.pending_user_ids()
    async with client:
        if not wanted:
            return {}
        found, _pages = await read_states(
            client, wanted, org_id=job.org_id, page_size=job.list_page_size, on_page=ui.listing
        )
        return found
