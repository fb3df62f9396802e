"""The queue of work the web service does in the background, and what a run tells the page.

In: work items (a key, a kind and a job id), and the runner's calls to a
:class:`~pcxbatch.context.RunUI`. Out: each item handed to the service's handler, those of one
key one at a time and in the order they came (the key is the PCX target, so one run at a time
per PCX key; a preview has a key of its own), and a :class:`Progress` per job that the pages and
the API read (rows done, rate, retries, ETA).

:class:`WorkQueue` is the interface; :class:`ThreadWorker` is the embedded default, threads in
this process, and ``queue_pg.PgQueue`` keeps the queue in PostgreSQL for several processes. Work
is named (kind and job id), never a closure, so that a queue in a database can hold it and any
process can do it. :meth:`ThreadWorker.wait_idle` lets tests wait for the queue to drain without
sleeping. :class:`Ticker` calls a function every second while a run goes on (its progress kept
where other processes can read it, a stop asked for elsewhere seen).
"""

from __future__ import annotations

import contextlib
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

#: Does one item of work: ``handler(kind, job_id)``; kinds are ``preview``, ``run``, ``sweep``.
Handler = Callable[[str, str], None]


class WorkQueue(Protocol):
    """Hands work to the handler in the background: the work of one key one at a time, in order."""

    #: True when the queue outlives the process (a database): nothing to recover at start.
    durable: bool

    def start(self, handler: Handler) -> None:
        """Begin handing work (queued already, or put later) to ``handler``."""
        ...

    def put(self, key: str, kind: str, job_id: str = "") -> None:
        """Queue ``kind`` of work on ``job_id`` behind the others of ``key``."""
        ...

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Wait until no work is queued or running; False when ``timeout`` passed first."""
        ...

    def stop(self) -> None:
        """Hand out no more work (what runs is left to end or to be taken over)."""
        ...


class ThreadWorker:
    """One thread per key with work, draining that key's items in order, then ending."""

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queues: dict[str, deque[tuple[str, str]]] = {}
        self._busy = 0
        self._handler: Handler | None = None

    def start(self, handler: Handler) -> None:
        """Hand work to ``handler`` from now on."""
        self._handler = handler

    def put(self, key: str, kind: str, job_id: str = "") -> None:
        """Queue the work; a thread for ``key`` starts when none is running."""
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                queue.append((kind, job_id))
                return
            self._queues[key] = deque([(kind, job_id)])
            self._busy += 1
        threading.Thread(
            target=self._drain, args=(key,), name=f"pcx-web-{key}", daemon=True
        ).start()

    def _drain(self, key: str) -> None:
        assert self._handler is not None, "put before start"
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    self._busy -= 1
                    self._lock.notify_all()
                    return
                kind, job_id = queue[0]
            try:
                self._handler(kind, job_id)
            finally:
                with self._lock:
                    queue.popleft()

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Wait until no work is queued or running; False when ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._busy == 0, timeout)

    def stop(self) -> None:
        """Nothing to release: the threads end with their queues (or with the process)."""


class Ticker:
    """Calls ``tick()`` every ``interval`` seconds on a thread of its own until stopped."""

    def __init__(self, tick: Callable[[], None], interval: float = 1.0) -> None:
        self._tick, self._interval = tick, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pcx-web-ticker", daemon=True)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            with contextlib.suppress(Exception):  # a tick the database refused: the next one
                self._tick()


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
