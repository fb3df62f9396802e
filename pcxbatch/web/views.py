"""The pages: sign-in, the job list with the upload form, one job's page, the accounts list.

In: :class:`~pcxbatch.web.exchange.Call` values (a session; every POST's CSRF token was
checked by ``app``). Out: :class:`~pcxbatch.web.exchange.Reply` values naming a template of
``pages`` and its values, or a redirect after a form (so a reload never repeats it). The
pages read without JavaScript; a running job's page refreshes itself.
"""

from __future__ import annotations

from typing import Any

from pcxbatch.web import api, followups, records, steps
from pcxbatch.web import flow as f
from pcxbatch.web.exchange import ADMIN, ANALYST, APPROVER, EVERYONE, PUBLIC, Call, Reply, Route
from pcxbatch.web.flow import Flow, Refused
from pcxbatch.web.store import JobRecord

#: States whose page refreshes itself (something is going on).
BUSY = (f.PREVIEWING, f.QUEUED, f.RUNNING)
#: How many of the validation's unusable rows a page lists (the rest: preview.xlsx).
SHOW_ROWS = 500


def job_page(flow: Flow, call: Call, job: JobRecord) -> dict[str, Any]:
    """The values the job page shows: the job, what the viewer may do, the rows to look at."""
    who = call.me
    made = {job.created_by, job.get("previewed_by"), job.get("submitted_by")}
    mine = who.account in {m for m in made if m}
    problems = flow.problems(job)
    return {
        "job": flow.view(job), "problems": problems[:SHOW_ROWS], "more": len(problems) > SHOW_ROWS,
        "results": steps.problem_rows(job), "busy": job.state in BUSY,
        "can_preview": who.role == ANALYST and job.state in (f.VALIDATED, f.PREVIEWED),
        "can_submit": who.role == ANALYST and job.state == f.PREVIEWED,
        "can_decide": who.role == APPROVER and job.state == f.AWAITING and not mine,
        "own_plan": who.role == APPROVER and job.state == f.AWAITING and mine,
        "can_cancel": who.role in (ANALYST, APPROVER) and job.state in (f.QUEUED, f.RUNNING),
        "can_resume": who.role == APPROVER and job.state == f.STOPPED and not mine,
        **_follow_ups(who.role, job),
    }  # fmt: skip


def _follow_ups(role: str, job: JobRecord) -> dict[str, bool]:
    """Whether the viewer may start a retry or an undo of the job's run (each a new job)."""
    ended = role == ANALYST and job.state in (f.FINISHED, f.STOPPED) and bool(job.get("run_dir"))
    counts = job.get("counts") or {}
    left = sum(counts.get(o.value, 0) for o in followups.RETRIED)
    return {
        "can_retry": ended and left > 0 and not job.get("retry_job"),
        "can_undo": ended and counts.get("applied", 0) > 0 and not job.get("undo_job"),
    }


def routes(flow: Flow) -> list[Route]:
    """The pages' routes, each with the roles that may use it."""

    def home(call: Call) -> Reply:
        return Reply(redirect="/jobs")

    def jobs(call: Call) -> Reply:
        return Reply(page="jobs.html", context={
            "jobs": [flow.view(j) for j in flow.store.jobs()], "templates": flow.config.templates(),
            "max_mb": flow.config.max_bytes // 1_000_000,
        })  # fmt: skip

    def upload(call: Call) -> Reply:
        return Reply(redirect=f"/jobs/{api.created(flow, call)}")

    def job(call: Call) -> Reply:
        record = flow.get(call.params["id"])
        return Reply(page="job.html", context=job_page(flow, call, record))

    def progress(call: Call) -> Reply:
        record = flow.get(call.params["id"])
        return Reply(json={"state": record.state, "progress": flow.progress(record)})

    def download(call: Call) -> Reply:
        return Reply(file=flow.file(call.me, call.params["id"], call.params["name"]))

    def accounts(call: Call) -> Reply:
        return Reply(page="accounts.html", context={"accounts": flow.store.accounts()})

    analyst, approver, admin = frozenset({ANALYST}), frozenset({APPROVER}), frozenset({ADMIN})
    return [
        Route("GET", "/", home, EVERYONE),
        Route("GET", "/jobs", jobs, EVERYONE),
        Route("POST", "/jobs", upload, analyst, upload=True),
        Route("GET", "/jobs/{id}", job, EVERYONE),
        Route("GET", "/jobs/{id}/progress", progress, EVERYONE),
        _step(flow, "preview", analyst), _step(flow, "submit", analyst),
        _step(flow, "approve", approver), _step(flow, "reject", approver),
        _step(flow, "resume", approver), _step(flow, "cancel", frozenset({ANALYST, APPROVER})),
        _follow_up(flow, "retry"), _follow_up(flow, "undo"),
        Route("GET", "/jobs/{id}/files/{name}", download, EVERYONE),
        Route("GET", "/accounts", accounts, admin),
        *_audit_routes(flow, admin),
    ]  # fmt: skip


def _step(flow: Flow, do: str, roles: frozenset[str]) -> Route:
    """The form that moves a job one step (``steps``), then back to the job's page."""

    def handle(call: Call) -> Reply:
        job_id, reason = call.params["id"], call.fields.get("reason", "").strip()
        if do in ("approve", "reject"):
            getattr(steps, do)(flow, call.me, job_id, reason)
        else:
            getattr(steps, do)(flow, call.me, job_id)
        return Reply(redirect=f"/jobs/{job_id}")

    return Route("POST", f"/jobs/{{id}}/{do}", handle, roles)


def _audit_routes(flow: Flow, admin: frozenset[str]) -> list[Route]:
    """The audit page and the evidence it hands out (admins only)."""

    def audit(call: Call) -> Reply:
        filters = records.Filters.of(call.query)
        return Reply(page="audit.html", context=audit_page(flow, filters))

    def evidence(call: Call) -> Reply:
        return Reply(file=records.evidence_pack(flow, call.me, call.params["id"]))

    def signed_plan(call: Call) -> Reply:
        return Reply(file=records.signed_plan(flow, call.me, call.params["id"]))

    return [
        Route("GET", "/audit", audit, admin),
        Route("GET", "/audit/jobs/{id}/evidence.zip", evidence, admin),
        Route("GET", "/audit/jobs/{id}/plan-signed.zip", signed_plan, admin),
    ]


def audit_page(flow: Flow, filters: records.Filters) -> dict[str, Any]:
    """The audit page's values: one page of entries, and the jobs whose evidence it offers."""
    from urllib.parse import urlencode

    def query(page: int) -> str:
        shown = {"account": filters.account, "job": filters.job, "from": filters.since,
                 "to": filters.until}  # fmt: skip
        return urlencode({**{k: v for k, v in shown.items() if v}, "page": page})

    jobs = [
        {**flow.view(j), "ran": bool(j.get("run_dir"))}
        for j in flow.store.jobs()[:100]
        if j.get("plan_sha256")
    ]
    return {"found": records.entries(flow, filters), "filters": filters, "query": query,
            "jobs": jobs}  # fmt: skip


def _follow_up(flow: Flow, do: str) -> Route:
    """The form that makes a new job of a run (retry or undo), then the new job's page."""

    def handle(call: Call) -> Reply:
        job = getattr(followups, do)(flow, call.me, call.params["id"])
        return Reply(redirect=f"/jobs/{job.id}")

    return Route("POST", f"/jobs/{{id}}/{do}", handle, frozenset({ANALYST}))


def refused_page(exc: Refused) -> Reply:
    """A refusal, as a page."""
    return Reply(
        exc.status, page="refused.html", context={"status": exc.status, "message": str(exc)}
    )


__all__ = ["PUBLIC", "job_page", "refused_page", "routes"]
