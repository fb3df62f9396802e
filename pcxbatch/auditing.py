"""The audit entries the runner's operations write: a run opened, declined, closed; a preview.

In: the operation's job, run folder, context and what it did. Out: one entry each in the report
folder's audit log (:class:`pcxbatch.audit.AuditLog`, made by ``ctx.audit_log``; None: no
log, which only benchmarks ask for). A run's closing entry carries its journal's digest and the
SHA-256 of every report file it wrote, and ends with a signed checkpoint. Entries are per
event, never per row. What goes in is what an examiner asks: who, when, which run and plan,
the input's SHA-256, the counts and the exit code; never the credential (not even its prefix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch.audit import Event
from pcxbatch.audit.runs import counts_of, file_hashes, journal_digest
from pcxbatch.config import Job

if TYPE_CHECKING:
    from pcxbatch.audit.log import AuditLog
    from pcxbatch.context import Confirmation, RunContext
    from pcxbatch.errors import ExitCode
    from pcxbatch.runfolder import RunFolder


def _log(job: Job, ctx: RunContext) -> AuditLog | None:
    return ctx.audit_log(job.report_dir, ctx.clock) if ctx.audit_log else None


def _objects(job: Job, folder: RunFolder) -> dict[str, str]:
    objects = {"run": folder.path.name, "job": job.name}
    plan_hash = folder.meta.get("plan_hash")
    if plan_hash:
        objects["plan"] = str(plan_hash)
    return objects


def _kind(job: Job, folder: RunFolder) -> str:
    meta = folder.meta
    if job.dry_run:
        return "dry_run"
    if meta.get("previous_run"):
        return "retry"
    if job.input.name == "undo.csv" and job.input.parent.parent == job.report_dir:
        return "undo"  # pcxbatch run REPORT_DIR/<run>/undo.csv
    return str(meta.get("kind") or "run")


def opened(job: Job, folder: RunFolder, ctx: RunContext, plan: Confirmation, *, new: bool) -> None:
    """A run confirmed and about to send (or, dry, to plan): ``run.start`` or ``run.resume``.
    Checks the signing key first, so a run never sends when its closing checkpoint could not
    be signed."""
    log = _log(job, ctx)
    if log is None:
        return
    log.check_key()
    meta = folder.meta
    details: dict[str, Any] = {
        "kind": _kind(job, folder),
        "input": job.input.name,
        "input_sha256": meta.get("input_sha256"),
        "target": plan.target,
        # Rows not yet sent count as not_attempted until they are: to_send says it better.
        "counts": counts_of({k: v for k, v in plan.counts.items() if k != "not_attempted"}),
        "to_send": counts_of(plan.to_send),
    }
    for key in ("previous_run", "previewed_by", "previewed_at", "applied_by"):
        if meta.get(key):
            details[key] = meta[key]
    if details["kind"] == "undo":
        details["undo_of"] = job.input.parent.name
    log.record(
        Event.RUN_START if new else Event.RUN_RESUME,
        ctx.who(),
        objects=_objects(job, folder),
        details=details,
    )


def declined(job: Job, folder: RunFolder, ctx: RunContext) -> None:
    """Declined at the prompt: nothing was sent."""
    log = _log(job, ctx)
    if log is not None:
        log.record(Event.RUN_DECLINE, ctx.who(), objects=_objects(job, folder))


def closed(
    job: Job,
    folder: RunFolder,
    ctx: RunContext,
    *,
    counts: Mapping[str, int],
    exit_code: ExitCode,
    stopped: str | None,
    files: Sequence[Path],
    journal: Mapping[str, Any],
    cancelled: bool = False,
) -> None:
    """The run's report is written: ``run.finish`` (every row done), ``run.stop`` (rows left,
    resumable) or ``run.cancel`` (abandoned), with the journal's digest (``runs.RowsDigest``,
    taken as the report read the rows), every report file's SHA-256 and a signed checkpoint."""
    log = _log(job, ctx)
    if log is None:
        return
    if cancelled:
        event = Event.RUN_CANCEL
    elif folder.journal.meta().get("state") == "finished":
        event = Event.RUN_FINISH
    else:
        event = Event.RUN_STOP
    details: dict[str, Any] = {
        "counts": counts_of(counts),
        "exit_code": int(exit_code),
        "input_sha256": folder.meta.get("input_sha256"),
    }
    if stopped:
        details["stopped"] = stopped
    log.record(
        event,
        ctx.who(),
        objects=_objects(job, folder),
        details=details,
        files=file_hashes(job.report_dir, files),
        journal=journal,
        checkpoint=True,
    )


def previewed(
    job: Job,
    folder: RunFolder,
    ctx: RunContext,
    plan_hash: str,
    plan_path: Path,
    counts: Mapping[str, int],
    files: Sequence[Path],
) -> None:
    """A preview and its plan are written: ``preview``, vouching for the preview files, the
    plan file and the preview's journal, with a signed checkpoint."""
    log = _log(job, ctx)
    if log is None:
        return
    log.record(
        Event.PREVIEW,
        ctx.who(),
        objects={"run": folder.path.name, "job": job.name, "plan": plan_hash},
        details={
            "input": job.input.name,
            "input_sha256": folder.meta.get("input_sha256"),
            "target": folder.meta.get("target"),
            "counts": counts_of(counts),
            "plan_file": str(plan_path),
        },
        files=file_hashes(job.report_dir, [*files, plan_path]),
        journal=journal_digest(folder.path.name, folder.journal.lines()),
        checkpoint=True,
    )
