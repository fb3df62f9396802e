"""Retention: uploads and report files are kept ``keep_days`` days, then removed.

In: a :class:`~pcxbatch.web.flow.Flow` (its clock, injectable, says what "now" is; its
config's ``keep_days``). Out: :func:`sweep` removes, for every job at rest (not previewing,
awaiting approval, queued or running) last changed before the cutoff, its upload, its run and
preview folders and its validation notes, and marks the job ``expired_at`` (the job's record
stays, so its page and the audit log still say what happened); evidence packs written for
download (``DATA_DIR/exports``) go after a day. The audit log is never touched: its entries
stay, and the sweep itself is one entry (``retention``) naming the jobs and run folders it
removed, which ``audit verify`` reads as files gone on purpose. :class:`Daily` runs the sweep
at start and then once a day, on the worker's queue.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pcxbatch.audit import Event
from pcxbatch.web import flow as f
from pcxbatch.web.events import actor
from pcxbatch.web.flow import Flow

#: States a job can be swept in: nothing is going on, nothing is waiting for a person.
AT_REST = (f.VALIDATED, f.PREVIEWED, f.FINISHED, f.STOPPED, f.REJECTED)
#: How long a downloaded evidence pack or signed plan stays on the server's disk.
EXPORTS_KEPT = timedelta(days=1)
SWEEPER = actor("pcxbatch", "system", "retention")


def sweep(flow: Flow) -> dict[str, Any]:
    """Remove what is older than ``keep_days``; what was removed (also the audit entry)."""
    now = flow.clock()
    cutoff = (now - timedelta(days=flow.config.keep_days)).isoformat(timespec="seconds")
    jobs: list[str] = []
    runs: list[str] = []
    files = 0
    for job in flow.store.jobs(AT_REST):
        if job.get("expired_at") or job.updated_at >= cutoff:
            continue
        # Marked first, and only while still in the state it was listed in: a job that a
        # person moved meanwhile (a resume) is left alone, and a marked one moves no more.
        marked = flow.store.move(job.id, (job.state,), job.state, job.updated_at,
                                 expired_at=flow.now())  # fmt: skip
        if marked is None:
            continue
        removed, folders = _remove_job_files(flow, job.id, job.data)
        jobs.append(job.id)
        runs += folders
        files += removed
    files += _remove_old_exports(flow.config.data_dir / "exports", now - EXPORTS_KEPT)
    details = {"keep_days": flow.config.keep_days, "before": cutoff, "jobs": jobs,
               "runs": runs, "files": files}  # fmt: skip
    flow.sink.record(Event.RETENTION, SWEEPER, details=details)
    return details


def _remove_job_files(flow: Flow, job_id: str, data: dict[str, Any]) -> tuple[int, list[str]]:
    """Remove a job's upload, run and preview folders and notes; (files removed, run names)."""
    count, runs = 0, []
    upload = data.get("input_path")
    if upload and Path(upload).is_file():
        Path(upload).unlink()
        count += 1
    for key in ("run_dir", "preview_dir"):
        folder = Path(data[key]) if data.get(key) else None
        # Only folders inside the report folder: never the audit log or anything else.
        if folder is None or folder.parent != flow.config.reports or not folder.is_dir():
            continue
        count += sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        runs.append(folder.name)
    notes = flow.config.data_dir / "jobs" / job_id
    if notes.is_dir():
        count += sum(1 for p in notes.rglob("*") if p.is_file())
        shutil.rmtree(notes)
    return count, runs


def _remove_old_exports(folder: Path, before: datetime) -> int:
    if not folder.is_dir():
        return 0
    count = 0
    for path in folder.iterdir():
        if datetime.fromtimestamp(path.stat().st_mtime, before.tzinfo) < before:
            count += sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 1
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return count


class Daily:
    """The sweep at start and then every ``interval`` seconds, each time as a task on the
    flow's queue (so it never runs beside itself). ``wait`` is ``threading.Event.wait``-like:
    tests pass their own to run the loop without sleeping; :meth:`stop` ends it."""

    def __init__(
        self, flow: Flow, interval: float = 86400.0, wait: Callable[[float], bool] | None = None
    ) -> None:
        self.flow, self.interval = flow, interval
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait

    def start(self) -> None:
        """Queue a sweep now, and start the thread that queues one a day."""
        self.queue_sweep()
        threading.Thread(target=self._loop, name="pcx-web-retention", daemon=True).start()

    def queue_sweep(self) -> None:
        """Queue one sweep."""
        self.flow.queue.put("retention", "sweep")

    def _loop(self) -> None:
        while not self._wait(self.interval) and not self._stopped.is_set():
            self.queue_sweep()

    def stop(self) -> None:
        """No more sweeps."""
        self._stopped.set()
