"""The JSON API under ``/api/v1`` (bearer tokens): the same steps as the pages.

In: :class:`~pcxbatch.web.exchange.Call` values. Out: :class:`~pcxbatch.web.exchange.Reply`
values with JSON: a job as :meth:`~pcxbatch.web.flow.Flow.view` shows it, or
``{"error": "..."}`` (``app`` turns a :class:`~pcxbatch.web.flow.Refused` into that, with its
status). Who may call what is in :func:`routes`.
"""

from __future__ import annotations

from pcxbatch.web import followups, steps
from pcxbatch.web.exchange import ANALYST, APPROVER, EVERYONE, Call, Reply, Route
from pcxbatch.web.flow import Flow, Refused, Spec

PREFIX = "/api/v1/jobs"


def spec_of(call: Call) -> Spec:
    """The upload form's settings: a template by name, or action/status/reason; a sheet."""
    values = {k: (call.fields.get(k) or "").strip() or None for k in Spec.__dataclass_fields__}
    return Spec(**values)


def created(flow: Flow, call: Call) -> str:
    """Validate the call's upload into a new job; its id (:class:`Refused` 400 when unusable)."""
    upload = call.upload
    if upload is None or upload.path is None:
        raise Refused(400, "no file: send the spreadsheet as the form field 'file'")
    try:
        job = flow.create(call.me, upload.path, upload.name, upload.sha256, spec_of(call))
    except Refused as exc:  # the CLI's message, naming the file as the person named it
        raise Refused(exc.status, str(exc).replace(str(upload.path), upload.name)) from None
    return job.id


def routes(flow: Flow) -> list[Route]:
    """The API's routes, each with the roles that may use it."""

    def create(call: Call) -> Reply:
        job = flow.get(created(flow, call))
        return Reply(201, json={"id": job.id, "state": job.state, "counts": job.get("counts")})

    def listing(call: Call) -> Reply:
        return Reply(json={"jobs": [flow.view(job) for job in flow.store.jobs()]})

    def one(call: Call) -> Reply:
        return Reply(json=flow.view(flow.get(call.params["id"])))

    def step(do: str, status: int = 200) -> Route:
        def handle(call: Call) -> Reply:
            job_id, who, reason = call.params["id"], call.me, call.fields.get("reason", "")
            if do in ("approve", "reject"):
                getattr(steps, do)(flow, who, job_id, reason)
            else:
                getattr(steps, do)(flow, who, job_id)
            return Reply(status, json=flow.view(flow.get(job_id)))

        roles = {"preview": {ANALYST}, "submit": {ANALYST}, "cancel": {ANALYST, APPROVER}}
        allowed = frozenset(roles.get(do, {APPROVER}))
        return Route("POST", f"{PREFIX}/{{id}}/{do}", handle, allowed, api=True)

    def follow_up(do: str) -> Route:
        def handle(call: Call) -> Reply:
            job = getattr(followups, do)(flow, call.me, call.params["id"])
            return Reply(201, json=flow.view(job))

        return Route("POST", f"{PREFIX}/{{id}}/{do}", handle, frozenset({ANALYST}), api=True)

    def download(call: Call) -> Reply:
        return Reply(file=flow.file(call.me, call.params["id"], call.params["name"]))

    return [
        Route("POST", PREFIX, create, frozenset({ANALYST}), api=True, upload=True),
        Route("GET", PREFIX, listing, EVERYONE, api=True),
        Route("GET", f"{PREFIX}/{{id}}", one, EVERYONE, api=True),
        step("preview", 202), step("submit"), step("approve", 202), step("reject"),
        step("cancel", 202), step("resume", 202), follow_up("retry"), follow_up("undo"),
        Route("GET", f"{PREFIX}/{{id}}/files/{{name}}", download, EVERYONE, api=True),
    ]  # fmt: skip
