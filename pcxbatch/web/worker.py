"""The queue of work the web service does in the background, and what a run tells the page.

In: tasks (a key and a callable), and the runner's calls to a :class:`~pcxbatch.context.RunUI`.
Out: the tasks run, one at a time per key and in the order they came (the key is the PCX
target, so one run at a time per PCX key; a preview has a key of its own), and a
:class:`Progress` per job that the pages and the API read (rows done, rate, retries, ETA).

:class:`WorkQueue` is the interface a later engine (a queue in PostgreSQL, several processes)
implements; :class:`ThreadWorker` is the embedded default, threads in this process.
:meth:`ThreadWorker.wait_idle` lets tests wait for the queue to drain without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pcxbatch.model import RowResult

if TYPE_CHECKING:
    from pcxbatch.context import Confirmation
    from pcxbatch.runfolder import UnfinishedRun

Task = Callable[[], None]


class WorkQueue(Protocol):
    """Runs tasks in the background: those of one key one at a time, in order."""

    def put(self, key: str, task: Task) -> None:
        """Queue ``task`` behind the others of ``key``."""
        ...


class ThreadWorker:
    """One thread per key with work, draining that key's tasks in order, then ending."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Task]] = {}
        self._busy = 0

    def put(self, key: str, task: Task) -> None:
        """Queue ``task``; a thread for ``key`` starts when none is running."""
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                queue.append(task)
                return
            self._queues[key] = deque([task])
            self._busy += 1
        threading.Thread(
            target=self._drain, args=(key,), name=f"pcx-web-{key}", daemon=True
        ).start()

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    self._busy -= 1
                    self._lock.notify_all()
                    return
                task = queue[0]
            try:
                task()
            finally:
                with self._lock:
                    queue.popleft()

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Wait until no task is queued or running; False when ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._busy == 0, timeout)


@dataclass
class Progress:
    """What a preview or a run has done so far, as the pages and the API show it."""

    phase: str = "waiting"  # waiting, listing, sending, stopping, done
    total: int = 0
    done: int = 0
    retries: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    listed: int = 0
    notice: str = ""
    started: float | None = None
    now: Callable[[], float] = field(default=time.monotonic, repr=False)

    def view(self) -> dict[str, Any]:
        """The progress as JSON: rows done of total, rows per second, retries, ETA seconds."""
        elapsed = (self.now() - self.started) if self.started is not None else 0.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.done, 0)
        eta = round(left / rate) if rate > 0 and left else None
        return {
            "phase": self.phase, "total": self.total, "done": self.done,
            "rate": round(rate, 1), "retries": self.retries, "eta_seconds": eta,
            "outcomes": dict(self.outcomes), "listed": self.listed, "notice": self.notice,
        }  # fmt: skip


class WebUI:
    """The :class:`~pcxbatch.context.RunUI` of the web service: it asks no one (the approval
    was the confirmation), keeps :class:`Progress`, and holds the hook that stops a run.

    :meth:`stop` may come from any thread: before the sends begin it is remembered, and the
    run stops as soon as its sending starts (in-flight requests finish, the rest stay
    ``not_attempted``), as on SIGTERM in the CLI.
    """

    def __init__(self) -> None:
        self.progress = Progress()
        self._lock = threading.Lock()
        self._stop: Callable[[str], None] | None = None
        self.stop_reason: str | None = None

    def planned(self, plan: Confirmation) -> bool:
        """Accept: the second person's approval is this run's confirmation."""
        self.progress.total = sum(plan.to_send.values())
        return True

    def started(self, total: int) -> None:
        """Sending starts."""
        self.progress.phase, self.progress.total = "sending", total
        self.progress.started = self.progress.now()

    def result(self, result: RowResult) -> None:
        """One more row answered."""
        p = self.progress
        p.done += 1
        p.retries += max(result.attempts - 1, 0)
        p.outcomes[result.outcome.value] = p.outcomes.get(result.outcome.value, 0) + 1

    def stopping(self, reason: str) -> None:
        """The run is stopping early."""
        self.progress.phase, self.progress.notice = "stopping", reason

    def resuming(self, run: UnfinishedRun) -> None:
        """A stopped run of the same plan is picked up."""
        self.progress.notice = "resuming the stopped run of this plan"

    def left_unfinished(self, runs: Sequence[UnfinishedRun]) -> None:
        """Web jobs each have their own report folder: nothing else is ever left unfinished."""

    def listing(self, pages: int, listed: int, found: int) -> None:
        """A preview read another page of users."""
        self.progress.phase, self.progress.listed = "listing", listed

    def notice(self, text: str) -> None:
        """Something to know while the run goes on (a wait the API asked for)."""
        self.progress.notice = text

    def interruptible(self, stop: Callable[[str], None]) -> None:
        """The run's sending began: ``stop(reason)`` ends it gracefully from any thread."""
        with self._lock:
            self._stop = stop
            reason = self.stop_reason
        if reason is not None:
            stop(reason)

    def stop(self, reason: str) -> None:
        """Stop the run (now, or as soon as its sending starts)."""
        with self._lock:
            self.stop_reason = reason
            stop = self._stop
        if stop is not None:
            stop(reason)
