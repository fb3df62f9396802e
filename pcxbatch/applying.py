"""A plan applies once: the record of applies, and what an apply shows and keeps of its plan.

In: a loaded :class:`~pcxbatch.plan.Plan`, the (checked, absolute) report folder an apply runs
in, a run folder's journal facts. Out: the run an earlier apply of the same plan left
(:func:`earlier_apply`: to resume when it stopped; refused when it finished), the record kept
while an apply runs (:func:`recorded`), and the :class:`~pcxbatch.context.PlanFacts` a
confirmation prompt shows.

The record is a file per plan hash in the report folder's root
(``reportdir.record_apply``), written atomically under the job's lock before any row of the
apply is recorded, and removed again when the apply sent nothing and left no run (declined at
the prompt, refused, failed before sending). So the working directory never matters, and a
second ``pcxbatch apply`` of the same plan cannot send it again: it finds the record, and
either resumes the run the record names or refuses, naming it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch import reportdir, runfolder
from pcxbatch.context import PlanFacts, RunContext
from pcxbatch.errors import UnusableError
from pcxbatch.journal import JOURNAL_NAME
from pcxbatch.plan import Plan, plan_transitions, same_person

if TYPE_CHECKING:
    from pcxbatch.config import Job


def facts(plan: Plan) -> PlanFacts:
    """What an apply's confirmation shows about ``plan``."""
    return PlanFacts(
        plan.hash, plan.previewed_by, plan.previewed_at, plan.target, plan_transitions(plan)
    )


def facts_of(meta: Mapping[str, Any]) -> PlanFacts | None:
    """The same, from an apply's journal facts (a resume by ``pcxbatch resume RUN_DIR``)."""
    if meta.get("kind") != runfolder.KIND_APPLY or not meta.get("plan_hash"):
        return None
    return PlanFacts(
        str(meta["plan_hash"]),
        str(meta.get("previewed_by") or ""),
        str(meta.get("previewed_at") or ""),
        str(meta.get("previewed_against") or ""),
    )


def check_resume_applier(meta: Mapping[str, Any], job: Job, operator: str) -> None:
    """A resumed apply keeps the second-person rule of the plan it applies."""
    previewer = str(meta.get("previewed_by") or "")
    applying = meta.get("kind") == runfolder.KIND_APPLY and job.require_second_person
    if applying and same_person(previewer, operator):
        raise UnusableError(
            f"the job requires a second person: {operator} previewed this plan and may"
            " not apply it, nor resume its apply; ask a colleague"
        )


def earlier_apply(plan: Plan, reports: Path) -> Path | None:
    """The run folder of an earlier apply of ``plan`` that stopped, to resume; None when the
    plan was never applied (or its apply sent nothing and left no run).

    Refused (:class:`UnusableError`), naming the run: an apply that finished (a plan applies
    once), and one that stopped in another report folder (it is resumed there). The plan's own
    report folder is looked in too, when it can be read: an applier with a report folder of
    their own still sees an apply made in the previewer's.
    """
    folders = [reports]
    previewed_in = reportdir.settle(Path(str(plan.job.get("report_dir") or reports)))
    if previewed_in != reports:
        folders.append(previewed_in)
    for folder in folders:
        record = reportdir.apply_record(folder, plan.hash)
        if record is None:
            continue
        run_dir = Path(str(record.get("run_dir") or ""))
        state = _state(run_dir)
        if state in (None, runfolder.STATE_PREPARING):
            if folder == reports:  # it never got to sending: as if it had not begun
                if state is not None:
                    shutil.rmtree(run_dir, ignore_errors=True)
                reportdir.forget_apply(folder, plan.hash)
            continue
        who = f"by {record.get('applied_by')}, started {record.get('started')}"
        if state == runfolder.STATE_READY and folder == reports:
            return run_dir
        if state == runfolder.STATE_READY:
            raise UnusableError(
                f"this plan's apply was started in {run_dir} ({who}) and stopped part-way;"
                f" finish it there: pcxbatch resume {run_dir}"
            )
        ended = "abandoned" if state == runfolder.STATE_ABANDONED else "applied"
        raise UnusableError(
            f"this plan (sha256 {plan.hash}) was {ended} already: run {run_dir} ({who})."
            " A plan applies once; preview again to make a new plan"
        )
    return None


@contextlib.contextmanager
def recorded(
    plan: Plan, reports: Path, folder: runfolder.RunFolder, ctx: RunContext
) -> Iterator[None]:
    """Record the apply of ``plan`` into ``folder`` while the block runs; forget it again when
    the block leaves no run behind (nothing was sent)."""
    reportdir.record_apply(
        reports,
        plan.hash,
        {"run_dir": str(folder.path), "started": ctx.now_iso(), "applied_by": ctx.operator},
    )
    try:
        yield
    finally:
        if not folder.path.exists():
            reportdir.forget_apply(reports, plan.hash)


def _state(run_dir: Path) -> str | None:
    """The state a run folder's journal holds; None when there is no such run (any more)."""
    if not (run_dir / JOURNAL_NAME).is_file():
        return None
    meta, _remaining = runfolder.peek(run_dir)
    return str(meta.get("state") or runfolder.STATE_PREPARING)
