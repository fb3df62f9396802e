"""After a run: "Retry the failed rows" and "Undo this run", each a NEW job.

In: a :class:`~pcxbatch.web.flow.Flow`, the signed-in analyst, the id of a finished or
stopped job that ran. Out: a new job in state ``validated`` whose input the server wrote from
the run's own records, so it goes through preview, submit and a different approver's approval
like any upload (nothing here sends a row):

- retry: the run's ``failed`` and ``not_attempted`` rows (its journal, as the CLI's
  ``retry_failed`` picks them), with the input's own columns, in a CSV; same settings.
- undo: the run's ``undo.csv`` (each changed user and the status it was seen in), as written by
  the runner; the status comes from the file's column, so the job names no action.

A stopped job that is retried is closed first (``stopped → finished``, conditionally, so a
resume racing it cannot also send those rows): its unsent rows are the new job's now.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pcxbatch.audit import Event
from pcxbatch.model import Outcome
from pcxbatch.read import file_sha256
from pcxbatch.web import flow as f
from pcxbatch.web.events import Who
from pcxbatch.web.flow import Flow, Refused, Spec
from pcxbatch.web.store import JobRecord
from pcxbatch.web.uploads import generated_path

#: The rows a retry sends again (the runner's ``retry_failed`` takes the same).
RETRIED = (Outcome.FAILED, Outcome.NOT_ATTEMPTED)


def ran(flow: Flow, job_id: str, doing: str) -> tuple[JobRecord, Path]:
    """The job and its run folder, or :class:`Refused` 409 when it has not run to an end."""
    job = flow.get(job_id)
    made = job.get(f"{doing}_job")
    if made:  # one follow-up of each kind per run, so two plans never send the same rows
        raise Refused(409, f"job {job_id}'s run was already followed up by job {made} ({doing})")
    run_dir = job.get("run_dir")
    if job.state not in (f.FINISHED, f.STOPPED) or not run_dir or not Path(run_dir).is_dir():
        raise Refused(409, f"job {job_id} is {job.state} with no run to {doing}; it needs a run")
    return job, Path(run_dir)


def retry(flow: Flow, who: Who, job_id: str) -> JobRecord:
    """A new job of the run's failed and not_attempted rows (409 when there are none)."""
    job, run_dir = ran(flow, job_id, "retry")
    path = generated_path(flow.config.data_dir / "uploads", ".csv")
    if not _write_retry_rows(run_dir, path):
        path.unlink(missing_ok=True)
        raise Refused(409, f"job {job_id}'s run has no failed or not_attempted rows to retry")
    stopped = job.state == f.STOPPED
    if stopped and flow.store.move(job_id, (f.STOPPED,), f.FINISHED, flow.now()) is None:
        path.unlink(missing_ok=True)  # resumed meanwhile: the resume sends those rows
        raise Refused(409, f"job {job_id} is {flow.get(job_id).state}; retry it when it ends")
    # The new input is a CSV: sheet "0" (a text file's only sheet) overrides a template's.
    spec = Spec(**{**job.get("spec", {}), "sheet": "0"})
    try:
        return _follow_up(flow, who, job, path, f"retry-of-{job_id}.csv", spec, Event.RETRY)
    except Refused:
        if stopped:  # no retry was made: the run stays resumable
            flow.store.move(job_id, (f.FINISHED,), f.STOPPED, flow.now())
        raise


def undo(flow: Flow, who: Who, job_id: str) -> JobRecord:
    """A new job of the run's ``undo.csv`` (409 when the run changed nobody)."""
    job, run_dir = ran(flow, job_id, "undo")
    source = run_dir / "undo.csv"
    if not source.is_file() or _data_lines(source) == 0:
        raise Refused(409, f"job {job_id}'s run changed no user; there is nothing to undo")
    path = generated_path(flow.config.data_dir / "uploads", ".csv")
    path.write_bytes(source.read_bytes())
    return _follow_up(flow, who, job, path, f"undo-of-{job_id}.csv", Spec(), Event.UNDO)


def _follow_up(
    flow: Flow, who: Who, job: JobRecord, path: Path, name: str, spec: Spec, event: str
) -> JobRecord:
    new = flow.create(who, path, name, file_sha256(path), spec)
    kind = "retry" if event == Event.RETRY else "undo"
    flow.store.note(new.id, flow.now(), follows={"kind": kind, "job": job.id})
    flow.store.note(job.id, flow.now(), **{f"{kind}_job": new.id})
    flow.record(event, who, new.id, of=job.id, plan_sha256=job.get("plan_sha256"))
    return flow.get(new.id)


def _write_retry_rows(run_dir: Path, out: Path) -> int:
    """Write the run's rows to retry, as the input had them, to ``out``; how many."""
    from pcxbatch import runfolder

    count = 0
    with runfolder.open_folder(run_dir) as folder, out.open("x", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(folder.meta["columns"])
        for line in folder.journal.lines():
            if line.outcome in RETRIED:
                writer.writerow(line.values)
                count += 1
    return count


def _data_lines(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)
