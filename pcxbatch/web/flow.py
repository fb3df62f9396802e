"""A job's life on the server: upload, validate, preview, submit, approve or reject, run, stop.

In: the signed-in account (:class:`~pcxbatch.web.events.Who`), an upload already on disk, job
ids. Out: :class:`~pcxbatch.web.store.JobRecord` values in the states
``validated → previewing → previewed → awaiting_approval → queued → running → finished |
stopped`` (or ``rejected``), report files, and one event per action. A request that does not
fit is a :class:`Refused` carrying the HTTP status (403, 404, 409) and one line for a person.

Every stage is the runner's (``read_input``/``check_table``, ``preview_job``, ``apply_plan``):
this module only decides who may move a job where, and keeps the plan the server made. The
PCX target and credential are the server's (:class:`ServerConfig`): a template or a form can
set neither, and ``updated_by`` is the signed-in account. The four-eyes rule is by identity:
the approver is never the account that uploaded, previewed or submitted the plan.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch.audit import Event
from pcxbatch.config import Job, load_job
from pcxbatch.context import RunContext
from pcxbatch.errors import ConfigError, ExitCode, PcxbatchError
from pcxbatch.web.events import EventSink, Who
from pcxbatch.web.store import JobRecord, Store
from pcxbatch.web.worker import Progress, WebUI, WorkQueue

if TYPE_CHECKING:
    from pcxbatch.credentials import Credentials

VALIDATED, PREVIEWING, PREVIEWED = "validated", "previewing", "previewed"
AWAITING, QUEUED, RUNNING = "awaiting_approval", "queued", "running"
FINISHED, STOPPED, REJECTED = "finished", "stopped", "rejected"

#: The report files a job offers for download, and the folder each is in.
FILES = {
    "results.xlsx": "run_dir", "results.csv": "run_dir", "summary.json": "run_dir",
    "undo.csv": "run_dir", "preview.csv": "preview_dir", "preview.xlsx": "preview_dir",
    "plan.json": "preview_dir",
}  # fmt: skip

#: Rows a person must look at on the results page.
PROBLEM_OUTCOMES = ("failed", "invalid", "duplicate", "not_found", "not_attempted")


class Refused(Exception):
    """A request that may not be done: ``status`` is its HTTP status, ``str()`` the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerConfig:
    """The server's own PCX target and credential, and where it keeps everything."""

    data_dir: Path
    base_url: str
    credentials: Credentials | None
    jobs_dir: Path | None = None  # job templates offered in the upload form
    max_bytes: int = 200 * 1000 * 1000
    #: Job settings every job gets (pacing for the sandbox, say); never target or credential.
    job_settings: Mapping[str, Any] = field(default_factory=dict)
    target_label: str = ""
    #: Days uploads and report files are kept (``retention``); audit entries always stay.
    keep_days: int = 90
    #: A ``postgresql://`` URL: state and queue there, for several service processes; None:
    #: SQLite in the data dir and a queue in this process.
    database: str | None = None
    #: Seconds without a heartbeat before another process takes a process's work over.
    stalled_after: float = 30.0

    @property
    def reports(self) -> Path:
        """The report folder of every job's runs and previews, and of the audit log."""
        return self.data_dir / "reports"

    def templates(self) -> list[str]:
        """The names of the job templates in ``jobs_dir``."""
        if self.jobs_dir is None or not self.jobs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.jobs_dir.glob("*.yaml"))


@dataclass(frozen=True)
class Spec:
    """What the upload form asked for: a template by name, or explicit settings."""

    template: str | None = None
    action: str | None = None
    status: str | None = None
    reason: str | None = None
    sheet: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Flow:
    """The job operations both the pages and the API call."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        queue: WorkQueue,
        sink: EventSink,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.config, self.store, self.queue, self.sink, self.clock = (
            config, store, queue, sink, clock,
        )  # fmt: skip
        self._live: dict[str, WebUI] = {}

    def now(self) -> str:
        """The time as the store keeps it."""
        return self.clock().isoformat(timespec="seconds")

    # --- upload and validation ------------------------------------------------------------

    def create(self, who: Who, upload: Path, name: str, sha256: str, spec: Spec) -> JobRecord:
        """Validate an uploaded file (already on disk under a generated name) into a new job.

        Refused with 400 and the CLI's own one-line message when the file or the settings
        cannot be used; the upload is removed then.
        """
        job_id = secrets.token_hex(8)
        job_dir = self.config.data_dir / "jobs" / job_id
        self.sink.record(
            Event.UPLOAD, who.actor(), objects={"job": job_id},
            details={"file": name, "sha256": sha256, "bytes": upload.stat().st_size},
        )  # fmt: skip
        try:
            job = self.build_job(spec, upload, job_dir, who.account)
            counts, problems, sheet = _validate(job)
        except PcxbatchError as exc:
            upload.unlink(missing_ok=True)
            message = one_line(exc)
            self.sink.record(
                Event.VALIDATE, who.actor(), objects={"job": job_id}, details={"error": message}
            )
            raise Refused(400, message) from None
        job_dir.mkdir(parents=True, exist_ok=True)
        _write_json(job_dir / "problems.json", problems)
        data = {
            "input_name": name, "input_sha256": sha256, "input_path": str(upload),
            "spec": spec.__dict__, "sheet": sheet, "counts": counts,
            "validation_counts": counts, "problem_rows": len(problems),
        }  # fmt: skip
        self.store.add_job(job_id, VALIDATED, who.account, self.now(), data)
        self.sink.record(Event.VALIDATE, who.actor(), objects={"job": job_id}, details=counts)
        return self.get(job_id)

    def build_job(self, spec: Spec, upload: Path, job_dir: Path, account: str) -> Job:
        """The job for an upload: the template's settings or the form's, with the server's
        target, report folder and limits, and ``updated_by`` the signed-in account."""
        templates = self.config.templates()
        if spec.template and spec.template not in templates:
            raise ConfigError("upload form", [f"template: no job template named {spec.template!r}"])
        settings: dict[str, Any] = {
            **self.config.job_settings,
            # One report folder for every job, so one audit log and one key vouch for them all;
            # a name per job keeps their locks apart.
            "input": upload, "report_dir": self.config.reports, "base_url": self.config.base_url,
            "name": f"web-{job_dir.name}",
            "updated_by": account, "fixed_updated_by": True,
            "require_second_person": True, "yes": True,
            "max_bytes": self.config.max_bytes,
        }  # fmt: skip
        for key in ("action", "status", "reason", "sheet"):
            if getattr(spec, key):
                settings[key] = getattr(spec, key)
        assert self.config.jobs_dir is not None or not spec.template
        target = self.config.jobs_dir / f"{spec.template}.yaml" if spec.template else upload  # type: ignore[operator]
        job = load_job(target, settings)
        # Whatever a template says, the server's credential and target are the ones used.
        return replace(job, credentials_file=None, sandbox=None, dry_run=False)

    # --- reading ----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """The job, or :class:`Refused` 404."""
        job = self.store.job(job_id)
        if job is None:
            raise Refused(404, f"no job {job_id!r}")
        return job

    def progress(self, job: JobRecord) -> dict[str, Any]:
        """What the job's preview or run has done so far."""
        live = self._live.get(job.id)
        if live is not None:  # running in this process
            return live.progress.view()
        if job.state == QUEUED:
            return Progress().view()
        # Elsewhere (kept every second by the process running it), or as it ended.
        stored: dict[str, Any] = job.get("progress") or Progress(phase="idle").view()
        return stored

    def view(self, job: JobRecord) -> dict[str, Any]:
        """The job as the API shows it (no path, no credential, no hash of a secret)."""
        keys = (
            "counts", "submitted_by", "submitted_at", "approved_by", "approved_at",
            "rejected_by", "decision_reason", "plan_sha256", "previewed_by", "previewed_at",
            "input_name", "input_sha256", "sheet", "transitions", "error", "stopped",
            "follows", "retry_job", "undo_job", "worker",
        )  # fmt: skip
        shown = {key: job.get(key) for key in keys}
        return {
            "id": job.id, "state": job.state, "created_by": job.created_by,
            "created_at": job.created_at, **shown, "progress": self.progress(job),
            "files": self.files(job),
        }  # fmt: skip

    def files(self, job: JobRecord) -> list[str]:
        """The report files this job has now, by name."""
        return [name for name in FILES if self._file_path(job, name) is not None]

    def problems(self, job: JobRecord) -> list[dict[str, Any]]:
        """The validation's unusable rows (row number, outcome, message), in file order."""
        path = self.config.data_dir / "jobs" / job.id / "problems.json"
        if not path.is_file():  # removed by the retention sweep
            return []
        rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
        return rows

    def file(self, who: Who, job_id: str, name: str) -> Path:
        """A report file of the job to download (an event says who took it)."""
        job = self.get(job_id)
        path = self._file_path(job, name) if name in FILES else None
        if path is None:
            raise Refused(404, f"job {job_id} has no file {name!r}")
        self.sink.record(Event.DOWNLOAD, who.actor(), objects={"job": job_id, "file": name})
        return path

    def _file_path(self, job: JobRecord, name: str) -> Path | None:
        folder = job.get(FILES[name])
        path = Path(folder) / name if folder else None
        return path if path is not None and path.is_file() else None

    # --- moving a job ----------------------------------------------------------------------

    def move(
        self, who: Who, job_id: str, from_states: tuple[str, ...], to: str, **facts: Any
    ) -> JobRecord:
        """Move a job, or :class:`Refused` 409 naming the state it is in (404: no such job);
        a job whose files the retention sweep removed moves no more."""
        if self.get(job_id).get("expired_at"):
            raise Refused(
                409, f"job {job_id}'s files were removed after {self.config.keep_days} days"
                " (retention); upload the file again",
            )  # fmt: skip
        moved = self.store.move(job_id, from_states, to, self.now(), **facts)
        if moved is None:
            state = self.get(job_id).state
            raise Refused(409, f"job {job_id} is {state}; this needs it {' or '.join(from_states)}")
        return moved

    def record(self, event: str, who: Who, job_id: str, **details: Any) -> None:
        """One event about a job."""
        self.sink.record(event, who.actor(), objects={"job": job_id}, details=details)

    def check_four_eyes(self, who: Who, job: JobRecord, doing: str) -> None:
        """:class:`Refused` 403 when ``who`` made, previewed or submitted the plan."""
        made = {job.created_by, job.get("previewed_by"), job.get("submitted_by")}
        if who.account.casefold() in {str(m).casefold() for m in made if m}:
            self.record(f"{doing}.refused", who, job.id, reason="four-eyes")
            raise Refused(
                403,
                f"you uploaded, previewed or submitted job {job.id}: a different approver must"
                f" {doing} it",
            )

    def set_live(self, job_id: str, ui: WebUI | None) -> None:
        """Keep (or drop) the UI of the job's preview or run in progress."""
        if ui is None:
            self._live.pop(job_id, None)
        else:
            self._live[job_id] = ui

    def live(self, job_id: str) -> WebUI | None:
        """The UI of the job's run in progress, if any."""
        return self._live.get(job_id)

    def context(self, ui: WebUI, who: Who) -> RunContext:
        """The runner's context for the server's target, as the account ``who`` (the
        runner's own audit entries name it too)."""
        return RunContext(
            ui=ui, credentials=self.config.credentials, operator=who.account, clock=self.clock,
            on_interruptible=ui.interruptible, actor=who.actor(),
        )  # fmt: skip


def _validate(job: Job) -> tuple[dict[str, int], list[dict[str, Any]], str | None]:
    """Read and check the job's input as ``pcxbatch validate`` does: counts, unusable rows."""
    from pcxbatch.runner import check_table, read_input

    table = read_input(job)
    counts = {"ready": 0, "invalid": 0, "duplicate": 0}
    problems: list[dict[str, Any]] = []
    for item in check_table(table, job):
        if item.outcome is None:
            counts["ready"] += 1
        else:
            counts[item.outcome.value] = counts.get(item.outcome.value, 0) + 1
            problems.append(
                {"row": item.row, "outcome": item.outcome.value, "message": item.message}
            )
    return counts, problems, table.sheet


def one_line(exc: PcxbatchError) -> str:
    """The message the CLI prints for ``exc``, on one line (a job's problems joined)."""
    if isinstance(exc, ConfigError):
        return f"{exc.source}: " + "; ".join(exc.problems)
    return " ".join(str(exc).split())


def plan_age_ok(previewed_at: str, now: datetime, max_hours: float) -> bool:
    """Whether a plan previewed at ``previewed_at`` is young enough to approve or run."""
    try:
        then = datetime.fromisoformat(previewed_at)
    except ValueError:
        return False
    return now - then <= timedelta(hours=max_hours)


def stopped_or_finished(code: ExitCode) -> str:
    """A run's end state from its exit code: ``stopped`` when rows are left to send."""
    return STOPPED if code is ExitCode.STOPPED else FINISHED


def seal_file(path: Path) -> None:
    """Make the server's plan file read-only: it never changes once written."""
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)
