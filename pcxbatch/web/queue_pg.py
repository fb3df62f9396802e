"""The web service's queue of work in PostgreSQL, for several service processes: procrastinate.

In: a ``postgresql://`` URL (the one ``pcxbatch serve --database`` keeps its state in), this
process's name, and how long a silent process is given before its work is taken over. Out:
:class:`PgQueue`, a :class:`~pcxbatch.web.worker.WorkQueue` whose work waits in procrastinate's
tables and is done by whichever service process fetches it first. This is the only module that
imports procrastinate.

What procrastinate gives, and why it is used rather than a queue of our own: a ``lock`` per key
(work of one PCX target runs one at a time, oldest first, across every process); a
``queueing_lock`` (the same work is never waiting twice); worker heartbeats, and
``get_stalled_jobs``/``retry_job``, which this module calls every few seconds: the work of a
process that stopped beating (``kill -9``, a lost host) is handed to another, and a run picked
up that way resumes from its journal (``steps``), so no row with a recorded outcome is sent
again.

procrastinate is asynchronous; the service is not. Each :class:`PgQueue` runs procrastinate's
worker on an event loop in a thread of its own, and :meth:`PgQueue.put` hands the insert to that
loop. The handler runs in procrastinate's worker threads (``sync_to_async``), a preview beside a
run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued

from pcxbatch.web.worker import Handler

QUEUE = "pcxbatch-web"
_TASK = "pcxbatch.web.work"
_SCHEMA_LOCK = 0x70637862  # "pcxb": one process at a time creates procrastinate's tables

log = logging.getLogger(__name__)


class PgQueue:
    """Work kept in PostgreSQL and done by any service process that serves the same database."""

    durable = True

    def __init__(
        self, url: str, *, name: str, stalled_after: float = 30.0, concurrency: int = 4
    ) -> None:
        self.name, self.stalled_after, self._concurrency = name, stalled_after, concurrency
        connector = PsycopgConnector(conninfo=url, min_size=1, max_size=12, timeout=15)
        self._app = App(connector=connector)
        self._task = self._app.task(name=_TASK, queue=QUEUE)(self._work)
        self._handler: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: Future[None] = Future()
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # --- the WorkQueue interface --------------------------------------------------------------

    def start(self, handler: Handler) -> None:
        """Start this process's procrastinate worker; raises what stops it from starting (the
        database unreachable, say) here, not later."""
        self._handler = handler
        self._thread = threading.Thread(target=self._serve, name="pcx-web-queue", daemon=True)
        self._thread.start()
        self._ready.result(timeout=60)

    def put(self, key: str, kind: str, job_id: str = "") -> None:
        """Queue the work behind the other work of ``key`` (in any process); work the same as
        some waiting already is not queued twice."""
        deferrer = self._task.configure(lock=key, queueing_lock=f"{kind}-{job_id}")
        with contextlib.suppress(AlreadyEnqueued):
            self._call(deferrer.defer_async(kind=kind, job_id=job_id))

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Wait until no work is waiting or being done, in any process (tests)."""
        deadline = time.monotonic() + timeout
        while self._call(self._busy()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """Stop fetching work. What runs here now is left: the process ends with it, and
        another process takes it over when this one's heartbeat is missed."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- inside -------------------------------------------------------------------------------

    def _work(self, kind: str, job_id: str) -> None:
        assert self._handler is not None
        self._handler(kind, job_id)

    def _call(self, coroutine: Any) -> Any:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the queue is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reaches start() when it happens before the worker runs
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                log.exception("the queue's worker stopped")

    async def _main(self) -> None:
        async with self._app.open_async():
            await self._ensure_schema()
            self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
            beat = max(self.stalled_after / 4, 0.5)
            worker = asyncio.create_task(
                self._app.run_worker_async(
                    queues=[QUEUE], name=self.name, concurrency=self._concurrency,
                    install_signal_handlers=False, update_heartbeat_interval=beat,
                    stalled_worker_timeout=self.stalled_after, fetch_job_polling_interval=beat,
                    abort_job_polling_interval=beat, shutdown_graceful_timeout=5,
                )
            )  # fmt: skip
            rescuer = asyncio.create_task(self._take_over_stalled(beat))
            self._ready.set_result(None)
            await self._stopping.wait()
            for task in (rescuer, worker):
                task.cancel()
            await asyncio.gather(rescuer, worker, return_exceptions=True)

    async def _ensure_schema(self) -> None:
        """procrastinate's tables, made by the first process that starts on the database."""
        pool: Any = self._app.connector.pool  # type: ignore[attr-defined]
        async with pool.connection() as conn, conn.transaction():
            # Held until this transaction commits, so the next process sees the tables made.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            found = await conn.execute("SELECT to_regclass('procrastinate_jobs')")
            row = await found.fetchone()
            if row is None or row[0] is None:
                await conn.execute(self._app.schema_manager.get_schema())

    async def _take_over_stalled(self, every: float) -> None:
        """Hand the work of processes whose heartbeat stopped back to the queue."""
        manager = self._app.job_manager
        while True:
            await asyncio.sleep(every)
            try:
                stalled = await manager.get_stalled_jobs(
                    queue=QUEUE, seconds_since_heartbeat=self.stalled_after
                )
                for job in stalled:
                    with contextlib.suppress(Exception):  # another process took it first
                        await manager.retry_job(job)
                        work = job.task_kwargs
                        log.warning(
                            "queued again: the %s of job %s, whose service process missed its"
                            " heartbeat for %g s", work.get("kind"), work.get("job_id") or "-",
                            self.stalled_after,
                        )  # fmt: skip
            except Exception:  # the database away for a moment: try again next time
                log.exception("could not look for stalled work")

    async def _busy(self) -> bool:
        row = await self._app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs"
            " WHERE queue_name = %(queue)s AND status IN ('todo', 'doing')",
            queue=QUEUE,
        )
        return bool(row["n"])
