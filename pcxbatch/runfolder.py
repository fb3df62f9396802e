"""Run folders: where a run's journal and report live, the job's lock, and what may be resumed.

In: a :class:`~pcxbatch.config.Job` (its ``report_dir`` and ``name``) or an existing run folder.
Out: a :class:`RunFolder` holding an open :class:`~pcxbatch.journal.Journal`, created fresh
(``REPORT_DIR/<UTC stamp>-<job>[-suffix]``, owner-only, never another run's) or reopened for a
resume; the job's lock (``REPORT_DIR/.<job>.lock``, released by the kernel if the process dies);
the latest unfinished run of a job; the checks that refuse a resume whose input or settings
changed.

A run folder's life is written into its journal's ``state``: ``preparing`` while rows are read
in, ``ready`` once every row is recorded (only then is it resumable), ``finished`` once every row
has an outcome. A folder whose run sent nothing and cannot go on is removed (:meth:`discard`), so
nothing is left that looks resumable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pcxbatch import __version__
from pcxbatch.config import Job, fingerprint, job_from_dict, job_to_dict
from pcxbatch.errors import InputError, LockedError, UnusableError
from pcxbatch.journal import JOURNAL_NAME, Journal
from pcxbatch.read import file_sha256

#: A run's life in its journal: rows still being read in, ready to send, every row tried.
STATE_PREPARING = "preparing"
STATE_READY = "ready"
STATE_FINISHED = "finished"
#: What made a run folder: a plain run (resumed by running the job again), a preview, an apply.
KIND_RUN = "run"
KIND_PREVIEW = "preview"
KIND_APPLY = "apply"


@dataclass
class RunFolder:
    """One run's folder and its open journal. Close it (or use ``with``) when done."""

    path: Path
    journal: Journal

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.journal.close()

    @property
    def meta(self) -> dict[str, Any]:
        """What the journal says about the run (job, input hash, columns, state, ...)."""
        return self.journal.meta()

    def discard(self) -> None:
        """Remove the folder of a run that sent nothing and will not go on."""
        self.journal.close()
        shutil.rmtree(self.path, ignore_errors=True)


def make_report_dir(job: Job) -> None:
    """Create the job's report folder (owner-only) if it is missing; a folder that cannot be
    used is the job's problem to fix (exit 2), not a traceback."""
    try:
        job.report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UnusableError(
            f"{job.report_dir}: cannot be used as the report folder: {exc.strerror or exc}"
        ) from None


def create(
    job: Job,
    now: datetime,
    *,
    kind: str = KIND_RUN,
    sheet: str | None,
    columns: Sequence[str],
    input_sha256: str | None = None,
    **meta: Any,
) -> RunFolder:
    """A fresh run folder with a journal in state ``preparing`` holding the job and its input.

    ``suffix`` of the folder name is the ``kind`` for previews and applies. ``meta`` adds facts
    to the journal (``previous_run``, the plan's hash, ...).
    """
    path = _new_path(job, now, "" if kind == KIND_RUN else kind)
    journal = Journal(path / JOURNAL_NAME)
    journal.set_meta(
        state=STATE_PREPARING,
        kind=kind,
        job=job.name,
        job_settings=job_to_dict(job),
        fingerprint=fingerprint(job),
        input_sha256=input_sha256 or file_sha256(job.input),
        sheet=sheet,
        columns=list(columns),
        started=now.isoformat(timespec="seconds"),
        version=__version__,
        **meta,
    )
    return RunFolder(path, journal)


def open_folder(run_dir: Path) -> RunFolder:
    """Reopen an existing run folder; :class:`UnusableError` when it is not one."""
    path = run_dir / JOURNAL_NAME
    if not path.is_file():
        raise UnusableError(f"{run_dir}: not a pcxbatch run folder (no {JOURNAL_NAME})")
    return RunFolder(run_dir, Journal(path))


def stored_job(run_dir: Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """The job a run folder was made with, with flag overrides (for resume and retries)."""
    with open_folder(run_dir) as folder:
        return job_from_dict(folder.meta["job_settings"], overrides)


def find_unfinished(job: Job) -> Path | None:
    """The job's latest plain run folder if that run stopped before every row was tried."""
    if not job.report_dir.is_dir():
        return None
    for run_dir in sorted(job.report_dir.iterdir(), reverse=True):
        if not (run_dir / JOURNAL_NAME).is_file():
            continue
        with open_folder(run_dir) as folder:
            meta = folder.meta
        if meta.get("job") != job.name or meta.get("kind") != KIND_RUN or meta.get("previous_run"):
            continue
        if meta.get("state") == STATE_READY:
            return run_dir
        return None  # the latest run of this job finished (or never got going)
    return None


def check_resumable(folder: RunFolder, job: Job) -> None:
    """Refuse to resume a run whose input file or job settings have changed since it began."""
    meta = folder.meta
    if meta.get("state") == STATE_PREPARING:
        raise UnusableError(
            f"{folder.path}: this run stopped while reading its input; start it again"
        )
    if fingerprint(job) != meta["fingerprint"]:
        raise UnusableError(
            f"job '{job.name}' has an unfinished run in {folder.path} made with other settings"
            " (action, status, reason, updated_by, sheet, ID pattern or base URL); run with"
            " --fresh to start over, or restore the settings to finish it"
        )
    if meta.get("previous_run"):
        return  # a retry run's rows live in its journal, not in the input file
    try:
        digest = file_sha256(job.input)
    except InputError as exc:
        raise UnusableError(f"cannot resume {folder.path}: {exc}") from None
    if digest != meta["input_sha256"]:
        raise UnusableError(
            f"{job.input.name} has changed since the run in {folder.path} began, so that run"
            " cannot be resumed with it; restore the original file to finish it, or run with"
            " --fresh to start a new run on the new file"
        )


@contextlib.contextmanager
def job_lock(job: Job) -> Iterator[None]:
    """Hold an exclusive lock per job for the whole run (released by the kernel if we die)."""
    make_report_dir(job)
    path = job.report_dir / f".{job.name}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another run of job '{job.name}' is in progress (lock: {path}); "
                "wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _new_path(job: Job, now: datetime, suffix: str) -> Path:
    """A fresh, owner-only folder for this run; never another run's."""
    base = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{job.name}" + (f"-{suffix}" if suffix else "")
    for n in range(1, 1000):
        path = job.report_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise UnusableError(f"{job.report_dir}: cannot create a new run folder")
