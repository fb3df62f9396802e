"""Run folders: where a run's journal and report live, the job's lock, and what may be resumed.

In: a :class:`~pcxbatch.config.Job` (its ``report_dir`` and ``name``) or an existing run folder.
Out: a :class:`RunFolder` holding an open :class:`~pcxbatch.journal.Journal`, created fresh
(``REPORT_DIR/<UTC stamp>-<job>[-suffix]``, owner-only, never another run's) or reopened for a
resume; the job's lock (``reportdir.lock``: per report folder, as an absolute path, and job); the
job's unfinished runs (:func:`find_unfinished`, every one, never only the latest); the checks
that refuse a resume to another target.

A run folder's life is written into its journal's ``state``: ``preparing`` while rows are read
in, ``ready`` once every row is recorded (only then is it resumable), ``finished`` once every row
has an outcome, ``abandoned`` when a person closed it without sending the rest. A folder whose
run sent nothing and cannot go on is removed (:meth:`discard`), so nothing is left that looks
resumable. Dry runs and previews are never unfinished runs: they send nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pcxbatch import __version__, reportdir
from pcxbatch.config import Job, fingerprint, job_from_dict, job_to_dict
from pcxbatch.errors import UnusableError
from pcxbatch.journal import JOURNAL_NAME, Journal
from pcxbatch.plan import same_sending
from pcxbatch.read import file_sha256
from pcxbatch.rules import same_api

#: A run's life in its journal: rows still being read in, ready to send, every row tried, and
#: closed by a person with rows left unsent (``pcxbatch abandon``).
STATE_PREPARING = "preparing"
STATE_READY = "ready"
STATE_FINISHED = "finished"
STATE_ABANDONED = "abandoned"
#: What made a run folder: a plain run (resumed by running the job again), a preview, an apply.
KIND_RUN = "run"
KIND_PREVIEW = "preview"
KIND_APPLY = "apply"

_STAMP = r"\d{8}T\d{6}Z"


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
        with contextlib.suppress(Exception):
            self.journal.close()
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass(frozen=True)
class UnfinishedRun:
    """A run of the job that stopped with rows left to send (``state`` ready)."""

    path: Path
    kind: str  # run or apply
    started: str  # ISO time the run began
    age_seconds: float  # how long ago, by the operation's clock
    remaining: int  # rows without an outcome
    meta: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def retry_of(self) -> str | None:
        """The run this one retries the failed rows of, if it is a ``--retry-failed`` run."""
        previous = self.meta.get("previous_run")
        return str(previous) if previous else None


def settled(job: Job) -> Job:
    """``job`` with its report folder as an absolute path, links resolved: the same folder (and
    lock) whatever the working directory."""
    return replace(job, report_dir=reportdir.settle(job.report_dir))


@contextlib.contextmanager
def job_lock(job: Job) -> Iterator[Path]:
    """Hold the job's lock in its report folder for the whole operation (released by the kernel
    if the process dies); yields the report folder, checked and absolute (``reportdir.lock``)."""
    with reportdir.lock(job.report_dir, job.name) as folder:
        yield folder


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
    to the journal (``previous_run``, the plan's hash, ...). A disk that refuses the folder or
    the journal is one line (:class:`UnusableError`), and nothing is left behind.
    """
    digest = input_sha256 or file_sha256(job.input)
    path = _new_path(job, now, "" if kind == KIND_RUN else kind)
    try:
        journal = Journal(path / JOURNAL_NAME)
        folder = RunFolder(path, journal)
        journal.set_meta(
            state=STATE_PREPARING,
            kind=kind,
            job=job.name,
            job_settings=job_to_dict(job),
            fingerprint=fingerprint(job),
            input_sha256=digest,
            sheet=sheet,
            columns=list(columns),
            started=now.isoformat(timespec="seconds"),
            dry_run=job.dry_run,
            version=__version__,
            **meta,
        )
    except Exception as exc:
        shutil.rmtree(path, ignore_errors=True)
        problem = reportdir.environment_problem(exc)
        if problem is None:
            raise
        raise UnusableError(f"{path}: cannot start the run's journal: {problem}") from None
    return folder


def open_folder(run_dir: Path) -> RunFolder:
    """Reopen an existing run folder; :class:`UnusableError` when it is not one, is another
    user's, or its journal is damaged (one line naming the folder)."""
    path = run_dir / JOURNAL_NAME
    if not path.is_file():
        raise UnusableError(f"{run_dir}: not a pcxbatch run folder (no {JOURNAL_NAME})")
    reportdir.check_owned(run_dir)
    try:
        journal = Journal(path)
    except sqlite3.DatabaseError as exc:
        raise UnusableError(_damaged(run_dir, exc)) from None
    try:
        journal.meta()
    except sqlite3.DatabaseError as exc:
        journal.close()
        raise UnusableError(_damaged(run_dir, exc)) from None
    return RunFolder(run_dir, journal)


def stored_job(run_dir: Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """The job a run folder was made with, with flag overrides (for resume and retries); its
    report folder is the one that holds ``run_dir``, whatever the working directory."""
    with open_folder(run_dir) as folder:
        job = job_from_dict(folder.meta["job_settings"], overrides)
    return replace(job, report_dir=reportdir.settle(run_dir).parent)


def find_unfinished(job: Job, now: datetime) -> list[UnfinishedRun]:
    """Every run of ``job`` in its report folder that stopped with rows left to send, oldest
    first. Dry runs, previews, finished and abandoned runs are not; neither are folders of
    other users (never read). A damaged journal in a folder named for this job is one line
    (:class:`UnusableError`): whether that run finished cannot be told."""
    if not job.report_dir.is_dir():
        return []
    named = re.compile(rf"^{_STAMP}-{re.escape(job.name)}(-(?:{KIND_APPLY}|\d+))*$")
    found: list[UnfinishedRun] = []
    for run_dir in sorted(job.report_dir.iterdir()):
        if not named.match(run_dir.name) or not _ours(run_dir / JOURNAL_NAME):
            continue
        meta, remaining = peek(run_dir)
        if (
            meta.get("job") != job.name
            or meta.get("state") != STATE_READY
            or meta.get("kind") not in (KIND_RUN, KIND_APPLY)
            or meta.get("dry_run")
            or (meta.get("job_settings") or {}).get("dry_run")
        ):
            continue
        started = str(meta.get("started") or "")
        age = _age(now, started)
        found.append(UnfinishedRun(run_dir, meta["kind"], started, age, remaining, meta))
    return found


def _age(now: datetime, started: str) -> float:
    try:
        return max((now - datetime.fromisoformat(started)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return 0.0


def resumes_with(run: UnfinishedRun, job: Job, input_sha256: str) -> bool:
    """True when running ``job`` on an input with ``input_sha256`` picks ``run`` up: a plain run
    (not an apply, not a retry) of the same input with the same sending settings."""
    meta = run.meta
    return (
        run.kind == KIND_RUN
        and not run.retry_of
        and meta.get("input_sha256") == input_sha256
        and same_sending(meta.get("fingerprint") or {}, fingerprint(job))
    )


def unfinished_run(folder: RunFolder, now: datetime) -> UnfinishedRun:
    """``folder``'s run as an :class:`UnfinishedRun` (what a resume says about it)."""
    meta = folder.meta
    started = str(meta.get("started") or "")
    remaining = folder.journal.counts()["not_attempted"]
    kind = str(meta.get("kind") or KIND_RUN)
    return UnfinishedRun(folder.path, kind, started, _age(now, started), remaining, meta)


def check_resumable(folder: RunFolder, job: Job) -> None:
    """Refuse to resume a run that never got going, or one whose target would change.

    A resume sends what its journal recorded when the run began; the input file is not read
    again (it may hold tonight's export by now). Pacing may change; where changes go may not,
    beyond PCX's two documented host names for the same API.
    """
    meta = folder.meta
    if meta.get("state") == STATE_PREPARING:
        raise UnusableError(
            f"{folder.path}: this run stopped while reading its input; nothing of it was sent:"
            " start it again"
        )
    if meta.get("superseded_by"):
        raise UnusableError(
            f"{folder.path}: its unsent rows were handed to {meta['superseded_by']} (run"
            f" --retry-failed); resume that one: pcxbatch resume {meta['superseded_by']}"
        )
    stored, current = meta["fingerprint"], fingerprint(job)
    if same_sending(stored, current):
        return
    if not same_api(str(stored.get("base_url")), str(current.get("base_url"))):
        raise UnusableError(
            f"{folder.path} sends to {stored.get('base_url')}; a resume cannot send to"
            f" {job.base_url} (drop --base-url, or PCX_BASE_URL, to finish it where it began)"
        )
    raise UnusableError(
        f"{folder.path}: a resume cannot change what the run sends (action, status, reason,"
        " updated_by, sheet, ID pattern)"
    )


def _ours(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_uid == os.geteuid()
    except OSError:
        return False


def peek(run_dir: Path) -> tuple[dict[str, Any], int]:
    """A run's journal facts and rows left to send, read-only (a scan changes no journal).

    This reads the journal's ``meta`` and ``rows`` tables directly rather than through
    :class:`Journal`, whose opening writes (WAL mode, schema): a scan must not.
    """
    uri = f"file:{quote(str(run_dir / JOURNAL_NAME))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.DatabaseError as exc:
        raise UnusableError(_damaged(run_dir, exc)) from None
    try:
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        (remaining,) = db.execute("SELECT COUNT(*) FROM rows WHERE outcome IS NULL").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}, 0  # killed before its tables existed: it never got going
        raise UnusableError(_damaged(run_dir, exc)) from None
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise UnusableError(_damaged(run_dir, exc)) from None
    finally:
        db.close()
    return meta, int(remaining)


def _damaged(run_dir: Path, exc: BaseException) -> str:
    what = reportdir.environment_problem(exc) or f"the journal cannot be read ({exc})"
    return (
        f"{run_dir}: {what}; pcxbatch cannot tell what that run did. Move the folder out of"
        f" {run_dir.parent} (keep it for the record) and run again"
    )


def _new_path(job: Job, now: datetime, suffix: str) -> Path:
    """A fresh, owner-only folder for this run; never another run's."""
    base = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{job.name}" + (f"-{suffix}" if suffix else "")
    for n in range(1, 1000):
        path = job.report_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            why = reportdir.environment_problem(exc) or exc.strerror or str(exc)
            raise UnusableError(f"{job.report_dir}: cannot create a run folder: {why}") from None
        return path
    raise UnusableError(f"{job.report_dir}: cannot create a new run folder")
