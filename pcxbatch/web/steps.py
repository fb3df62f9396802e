"""The steps that move a job after its upload: preview, submit, approve, reject, run, cancel,
resume, and picking up after a restart.

In: a :class:`~pcxbatch.web.flow.Flow`, the signed-in account, a job id. Out: the job in its
new state (or :class:`~pcxbatch.web.flow.Refused`), and for preview and run work on the flow's
queue (a kind and the job id) that :func:`perform` does by calling the runner (``preview_job``,
``apply_plan`` on the server-held plan file: the plan applied is exactly the one approved,
never a re-read of the upload).

The work may be done by another service process than the one that queued it (``queue_pg``),
and may be handed out again when a process dies: each task reads the job from the store and
does nothing unless the job is still waiting for it, and a run picked up from a process that
died resumes from its journal. While a run goes on, its progress is kept in the store every
second (any process's pages show it) and a cancel asked for through any process reaches it.
"""

from __future__ import annotations

import csv
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from pcxbatch.audit import Event
from pcxbatch.errors import LockedError, PcxbatchError
from pcxbatch.web import flow as f
from pcxbatch.web.events import Who
from pcxbatch.web.flow import Flow, Refused, Spec
from pcxbatch.web.store import JobRecord
from pcxbatch.web.worker import Progress, Ticker, WebUI

PREVIEW, RUN, SWEEP = "preview", "run", "sweep"


def perform(flow: Flow, kind: str, job_id: str) -> None:
    """Do one item of the queue's work: ``preview`` or ``run`` the job, or ``sweep``."""
    if kind == PREVIEW:
        _preview_task(flow, job_id)
    elif kind == RUN:
        _run_task(flow, job_id)
    elif kind == SWEEP:
        from pcxbatch.web.retention import sweep

        sweep(flow)
    else:
        raise ValueError(f"no work of kind {kind!r}")


def preview(flow: Flow, who: Who, job_id: str) -> JobRecord:
    """Queue a preview of the job against the server's PCX target (state ``previewing``)."""
    job = flow.move(
        who, job_id, (f.VALIDATED, f.PREVIEWED), f.PREVIEWING, error=None,
        preview_asked_by=[who.account, who.role, who.origin],
    )  # fmt: skip
    flow.record(Event.PREVIEW, who, job_id, step="requested")
    _queue_preview(flow, job_id)
    return job


def _preview_task(flow: Flow, job_id: str) -> None:
    from pcxbatch.runner import preview_job

    job = flow.store.job(job_id)
    if job is None or job.state != f.PREVIEWING:  # done already, or moved on
        return
    who = Who(*(job.get("preview_asked_by") or (job.created_by, "analyst", "worker")))
    ui = WebUI()
    flow.set_live(job.id, ui)
    job_dir = flow.config.data_dir / "jobs" / job.id
    try:
        spec = Spec(**job.get("spec", {}))
        run_job = flow.build_job(spec, Path(job.get("input_path")), job_dir, job.created_by)
        with Ticker(lambda: _keep_progress(flow, job_id, ui)):
            result = preview_job(run_job, flow.context(ui, who))
    except Exception as exc:  # the page says why; the job can be previewed again
        message = f.one_line(exc) if isinstance(exc, PcxbatchError) else _internal(exc)
        flow.store.move(job.id, (f.PREVIEWING,), f.VALIDATED, flow.now(), error=message)
        flow.record(f"{Event.PREVIEW}.failed", who, job.id, error=message)
        flow.set_live(job.id, None)
        return
    f.seal_file(result.plan_path)
    flow.store.move(
        job.id, (f.PREVIEWING,), f.PREVIEWED, flow.now(),
        counts=result.counts, transitions=result.transitions, plan_sha256=result.plan_hash,
        plan_path=str(result.plan_path), preview_dir=str(result.run_dir),
        previewed_by=who.account, previewed_at=flow.now(), preview_counts=result.counts,
        progress=ui.progress.view(),
    )  # fmt: skip
    flow.set_live(job.id, None)
    flow.record(
        Event.PREVIEW,
        who,
        job.id,
        step="previewed",
        plan_sha256=result.plan_hash,
        counts=result.counts,
    )


def submit(flow: Flow, who: Who, job_id: str) -> JobRecord:
    """Submit the previewed plan for a second person's approval."""
    job = flow.move(
        who, job_id, (f.PREVIEWED,), f.AWAITING, submitted_by=who.account,
        submitted_at=flow.now(),
    )  # fmt: skip
    flow.record(Event.SUBMIT, who, job_id, plan_sha256=job.get("plan_sha256"))
    return job


def _check_plan(flow: Flow, who: Who, job: JobRecord, doing: str) -> None:
    """Four eyes, the job's state, the plan's age, and the plan file still the one reviewed."""
    from pcxbatch.plan import load_plan

    flow.check_four_eyes(who, job, doing)
    if job.state != f.AWAITING:
        raise Refused(
            409, f"job {job.id} is {job.state}; only a plan awaiting_approval can be decided"
        )
    if doing == "approve":
        max_hours = float(flow.config.job_settings.get("max_plan_age_hours", 24.0))
        if not f.plan_age_ok(str(job.get("previewed_at")), flow.clock(), max_hours):
            raise Refused(
                409, f"job {job.id}'s plan is older than {max_hours:g} hours; preview again"
            )
        if load_plan(Path(job.get("plan_path"))).hash != job.get("plan_sha256"):
            raise Refused(409, f"job {job.id}'s plan file is not the one reviewed")


def approve(flow: Flow, who: Who, job_id: str, reason: str) -> JobRecord:
    """Approve the plan (a different account with the approver role): the run is queued."""
    _check_plan(flow, who, flow.get(job_id), "approve")
    job = flow.move(
        who, job_id, (f.AWAITING,), f.QUEUED, approved_by=who.account,
        approved_at=flow.now(), decision_reason=reason, run_by=who.account, run_origin=who.origin,
    )  # fmt: skip
    flow.store.add_approval(
        job_id, who.account, "approve", reason, job.get("plan_sha256"), flow.now()
    )
    flow.record(Event.APPROVE, who, job_id, plan_sha256=job.get("plan_sha256"), reason=reason)
    _queue_run(flow, job_id)
    return job


def reject(flow: Flow, who: Who, job_id: str, reason: str) -> JobRecord:
    """Reject the plan, with a reason; it can never run."""
    if not reason.strip():
        raise Refused(400, "say why the plan is rejected")
    _check_plan(flow, who, flow.get(job_id), "reject")
    job = flow.move(
        who, job_id, (f.AWAITING,), f.REJECTED, rejected_by=who.account, decision_reason=reason
    )
    flow.store.add_approval(
        job_id, who.account, "reject", reason, job.get("plan_sha256"), flow.now()
    )
    flow.record(Event.REJECT, who, job_id, plan_sha256=job.get("plan_sha256"), reason=reason)
    return job


def cancel(flow: Flow, who: Who, job_id: str) -> JobRecord:
    """Stop the job's run: a queued run never starts; a running one stops as on SIGTERM (the
    requests in flight finish, the rest stay ``not_attempted``, resumable). The stop is kept
    in the store, where the run sees it within a second in whichever process it runs (at once
    when that is this one)."""
    reason = f"cancelled by {who.account}"
    queued = flow.store.move(job_id, (f.QUEUED,), f.STOPPED, flow.now(), stopped=reason)
    if queued is not None:
        flow.record(Event.RUN_CANCEL, who, job_id, before="queued")
        return queued
    job = flow.store.move(job_id, (f.RUNNING,), f.RUNNING, flow.now(), stop_requested=reason)
    if job is None:
        state = flow.get(job_id).state
        raise Refused(
            409, f"job {job_id} is {state}; only a queued or running job can be cancelled"
        )
    ui = flow.live(job_id)
    if ui is not None:
        ui.stop(reason)
    flow.record(Event.RUN_CANCEL, who, job_id, before="running")
    return job


def resume(flow: Flow, who: Who, job_id: str) -> JobRecord:
    """Finish a stopped run of the same plan (an approver who did not make the plan)."""
    flow.check_four_eyes(who, flow.get(job_id), "resume")
    job = flow.move(
        who,
        job_id,
        (f.STOPPED,),
        f.QUEUED,
        run_by=who.account,
        run_origin=who.origin,
        stopped=None,
        error=None,
        stop_requested=None,
    )
    flow.record(Event.RUN_RESUME, who, job_id)
    _queue_run(flow, job_id)
    return job


def recover(flow: Flow) -> None:
    """After a restart (or a ``kill -9``): a preview in progress is undone, and the runs that
    were queued or running are queued again, in order; a run resumes from its journal, so no
    row with a recorded outcome is sent again.

    With a durable queue (PostgreSQL) the queue itself knows what every process was doing and
    hands a dead process's work to another; other processes may be running work now, so only
    previews and runs whose queueing may have been lost (a process killed between the job's
    move and the queue's insert) are queued again, which the queue ignores when they wait
    already and the tasks ignore when they were done."""
    if flow.queue.durable:
        for job in flow.store.jobs([f.PREVIEWING]):
            _queue_preview(flow, job.id)
        for job in reversed(flow.store.jobs([f.QUEUED])):
            _queue_run(flow, job.id)
        return
    for job in flow.store.jobs([f.PREVIEWING]):
        flow.store.move(job.id, (f.PREVIEWING,), f.VALIDATED, flow.now(),
                        error="the server restarted during the preview; preview again")  # fmt: skip
    for job in reversed(flow.store.jobs([f.RUNNING, f.QUEUED])):
        flow.store.move(job.id, (f.RUNNING,), f.QUEUED, flow.now())
        _queue_run(flow, job.id)


def _queue_preview(flow: Flow, job_id: str) -> None:
    flow.queue.put(f"preview-{job_id}", PREVIEW, job_id)


def _queue_run(flow: Flow, job_id: str) -> None:
    flow.queue.put(f"run-{flow.config.base_url}", RUN, job_id)


def _run_task(flow: Flow, job_id: str) -> None:
    """Apply the job's plan as its approver (or resumer), and keep how it ended. A job found
    ``running`` is one whose process stopped answering: the queue handed it here, and it
    resumes from its journal."""
    from pcxbatch.runner import apply_plan

    before = flow.store.job(job_id)
    job = flow.store.move(
        job_id, (f.QUEUED, f.RUNNING), f.RUNNING, flow.now(), worker=process_name(),
        progress=Progress().view(),
    )  # fmt: skip
    if before is None or job is None:  # cancelled while it waited, or done already
        return
    ui = WebUI()
    flow.set_live(job_id, ui)
    operator = str(job.get("run_by") or job.get("approved_by"))
    who = Who(operator, "approver", str(job.get("run_origin") or "worker"))
    taken_over = before.state == f.RUNNING
    seq = flow.store.start_run(job_id, operator, flow.now())
    flow.record(Event.RUN_START, who, job_id, plan_sha256=job.get("plan_sha256"),
                worker=process_name(), taken_over=taken_over)  # fmt: skip
    facts: dict[str, Any]
    try:
        with Ticker(lambda: _keep_progress(flow, job_id, ui)):
            if job.get("stop_requested"):  # asked for while no process was running it
                ui.stop(str(job.get("stop_requested")))
            result = apply_plan(Path(job.get("plan_path")), flow.context(ui, who))
        state = f.stopped_or_finished(result.exit_code)
        run_dir = str(result.run_dir) if result.run_dir else None
        facts = {"counts": result.counts, "run_dir": run_dir, "stopped": result.stopped,
                 "exit_code": int(result.exit_code)}  # fmt: skip
    except Exception as exc:  # the run stays resumable when it got that far
        if taken_over and isinstance(exc, LockedError):  # its process still runs it, after all
            _step_aside(flow, before, seq, who)
            return
        message = f.one_line(exc) if isinstance(exc, PcxbatchError) else _internal(exc)
        state, facts = f.STOPPED, {"error": message, "stopped": message}
    facts["progress"] = replace(ui.progress, phase="done").view()
    flow.store.move(job_id, (f.RUNNING,), state, flow.now(), **facts)
    flow.store.end_run(seq, state, facts.get("run_dir"), flow.now())
    if taken_over:  # the run of the process that died never ended
        flow.store.end_open_runs(job_id, "interrupted", flow.now())
    flow.set_live(job_id, None)
    flow.record(Event.RUN_FINISH if state == f.FINISHED else Event.RUN_STOP, who, job_id,
                counts=facts.get("counts"), stopped=facts.get("stopped"))  # fmt: skip


def _step_aside(flow: Flow, before: JobRecord, seq: int, who: Who) -> None:
    """The run was handed here as stalled, but its job's lock is held: the process running it
    is alive after all (paused, or cut off from the database longer than ``--stalled-after``)
    and sends on. Nothing is sent from here; the job is left to that process, as it was."""
    flow.store.note(before.id, flow.now(), worker=before.get("worker"),
                    progress=before.get("progress"))  # fmt: skip
    flow.store.end_run(seq, "declined", None, flow.now())
    flow.set_live(before.id, None)
    flow.record(Event.RUN_DECLINE, who, before.id, worker=process_name(),
                reason="another process holds the run's lock and still runs it")  # fmt: skip


def _keep_progress(flow: Flow, job_id: str, ui: WebUI) -> None:
    """Keep the progress where every process's pages read it; pass on a stop asked for."""
    job = flow.store.note(job_id, flow.now(), progress=ui.progress.view())
    reason = job.get("stop_requested") if job is not None else None
    if reason and ui.stop_reason is None:
        ui.stop(str(reason))


def process_name() -> str:
    """Which service process does the work (the API's ``worker``, the audit entry, the queue's
    worker name): ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def problem_rows(job: JobRecord, limit: int = 1000) -> list[dict[str, str]]:
    """The results' rows a person must look at (failed, invalid, ...), first ``limit``."""
    run_dir = job.get("run_dir")
    path = Path(run_dir) / "results.csv" if run_dir else None
    if path is None or not path.is_file():
        return []
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("outcome") in f.PROBLEM_OUTCOMES and len(rows) < limit:
                rows.append(row)
    return rows


def _internal(exc: Exception) -> str:
    return f"internal error ({type(exc).__name__}); the run stays resumable"
