"""The execute stage: send every pending row through the client and record what came back.

In: a :class:`~pcxbatch.journal.Journal` holding the checked rows, a client that can
``deactivate``/``set_status``, a concurrency, and a stop event (set by an interrupt or a guard).
Out: every row that was sent has its outcome in the journal; rows never reached stay pending (the
report shows them ``not_attempted``; a resume sends them). Raises
:class:`~pcxbatch.errors.AuthError` after draining when the API refused the credential, and
:class:`~pcxbatch.errors.StoppedError` when the failure guard tripped, the API stopped answering
(``retry.ApiWatch``) or asked for a wait longer than the job allows.

Pacing and retries live in the client and its limiter; this module turns a final answer into the
row's outcome by the decision table of :mod:`pcxbatch.answers` (:func:`classify`; an answer that
leaves the truth open is recorded ``open``, for ``settle`` to read after the sends) and keeps the
journal's promise: an intent is committed before a request leaves, an outcome right after the
answer. Commits are grouped so one fsync serves all the rows that became ready at the same
moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from pcxbatch import answers
from pcxbatch.errors import AuthError, StoppedError
from pcxbatch.journal import Journal, PendingRow
from pcxbatch.model import Action, RowResult
from pcxbatch.retry import GIVE_UP_AFTER, ApiWatch, Halted, Watched

#: How long in-flight requests may take to finish after an interrupt before they are abandoned.
DRAIN_SECONDS = 40.0


class CallResultLike(Protocol):
    """What execute reads of a client's answer (see ``pcxbatch.client.CallResult``)."""

    @property
    def http_status(self) -> int | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def message(self) -> str: ...
    @property
    def ambiguous(self) -> bool: ...
    @property
    def throttled(self) -> int: ...
    @property
    def user_status(self) -> str | None: ...


class Sender(Protocol):
    """The two calls execute needs (``pcxbatch.client.PcxClient`` provides them)."""

    async def deactivate(
        self, user_id: str, *, updated_by: str, reason: str | None
    ) -> CallResultLike: ...

    async def set_status(
        self, user_id: str, *, status: str, reason: str | None
    ) -> CallResultLike: ...


@dataclass(frozen=True)
class FailureGuard:
    """Stop the run when more than ``threshold`` of the last ``window`` sent rows failed, or
    when the API stopped answering for ``give_up_after`` seconds (``retry.ApiWatch``).

    A wrong file or a broken key should not burn through a whole list. On a file with fewer
    than ``2 * window`` rows to send, the guard judges the last half of them instead (at least
    ``least`` rows: a file that small is over before a stop would spare anything).
    """

    threshold: float = 0.5
    window: int = 50
    #: A dead API stops the run too: attempts failing with no answer for this long.
    give_up_after: float = GIVE_UP_AFTER
    least: int = 10


def classify(row: PendingRow, answer: CallResultLike) -> RowResult:
    """Turn the client's final answer for ``row`` into the row's outcome and message, by the
    decision table in :mod:`pcxbatch.answers` (README.md, "What each answer means").

    An answer that leaves the truth open (a 2xx that does not show the change, a 409 that does
    not show the user, a failure after an attempt that may have been applied) comes back
    ``open``: ``failed`` and unconfirmed for now, until ``settle`` reads the user's status.
    """
    facts = facts_of(row, answer.ambiguous)
    kind = answers.kind_of(answer.http_status, answer.user_status, row.target_status)
    text = answers.describe(
        kind,
        answer.http_status,
        answer.attempts,
        answer.message,
        answer.user_status,
        row.target_status,
    )
    decision = answers.on_answer(facts, kind, text)
    return RowResult(
        row=row.row,
        outcome=decision.outcome,
        http_status=answer.http_status,
        attempts=answer.attempts,
        message=decision.message,
        request_id=answer.request_id,
        throttled=answer.throttled,
        earlier=facts.earlier,
        confirmed=decision.confirmed,
        open=decision.open,
        answer_kind=kind.value,
        answer_text=text,
    )


def facts_of(row: PendingRow, ambiguous: bool = False, at: str | None = None) -> answers.Facts:
    """What the journal knows of ``row``, plus whether this call's attempts were ambiguous.

    ``at`` names the read that saw ``row.seen_status``, for messages (default: its time).
    """
    earlier = row.earlier
    if not earlier and row.resent:
        earlier = answers.EARLIER_RUN
    if not earlier and ambiguous:
        earlier = answers.EARLIER_ATTEMPT
    before = answers.before_of(row.seen_status, row.seen_at, row.target_status)
    when = at or (f"the read at {row.seen_at}" if row.seen_at else "the read before sending")
    return answers.Facts(
        action=row.action,
        target=row.target_status,
        before=before,
        before_at=when if before else None,
        earlier=earlier,
    )


class _Committer:
    """Group commit: every intent and outcome that arrives while a commit runs shares the next."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._intents: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._results: list[RowResult] = []
        self._released: list[tuple[int, str]] = []
        self._wake = asyncio.Event()
        self._closed = False

    async def intent(self, row: int) -> None:
        """Return once the intent for ``row`` is durable."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._intents.append(row)
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    def result(self, result: RowResult) -> None:
        """Queue an outcome; it is committed at the next wake-up."""
        self._results.append(result)
        self._wake.set()

    def release(self, row: int, earlier: str = "") -> None:
        """Queue ``row`` to go back to pending: it got no answer (the credential was refused).
        ``earlier`` empty: certainly not applied; else how an attempt may have applied it."""
        self._released.append((row, earlier))
        self._wake.set()

    async def run(self) -> None:
        """Commit whatever has queued up, until closed."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Read before the flush: whatever queues up while it runs (close() included) wakes
            # this loop again, so the last results are never left behind.
            closed = self._closed
            await self.flush()
            if closed:
                return

    async def flush(self) -> None:
        intents, self._intents = self._intents, []
        waiters, self._waiters = self._waiters, []
        results, self._results = self._results, []
        released, self._released = self._released, []
        try:
            # The commit and its fsync run in a worker thread: the event loop goes on sending
            # and receiving meanwhile (a slow disk no longer stalls every request), and what
            # arrives in the meantime shares the next commit.
            await asyncio.to_thread(self._journal.commit, intents, results, released)
        except BaseException as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        self._closed = True
        self._wake.set()


async def execute(
    journal: Journal,
    client: Sender,
    *,
    concurrency: int,
    stop: asyncio.Event,
    on_result: Callable[[RowResult], None] = lambda _r: None,
    guard: FailureGuard | None = None,
    watch: ApiWatch | None = None,
) -> None:
    """Send every pending row of ``journal`` with up to ``concurrency`` requests in flight.

    Returns when every pending row has an outcome, or when ``stop`` was set (the rows not yet
    sent stay pending). ``on_result`` is called with each row's result as it is recorded.
    A ``retry.Watched`` client (``PcxClient``) is watched by ``watch`` (dead API, halting).
    """
    committer = _Committer(journal)
    commit_task = asyncio.create_task(committer.run())
    sending = _Sending(journal, client, committer, concurrency, stop, on_result, guard)
    workers = [asyncio.create_task(sending.work()) for _ in range(concurrency)]
    watching = []  # the watch listens to the client's attempts, and halts them on stop
    if watch is not None and isinstance(client, Watched):
        watching.append(asyncio.create_task(watch.watch(client)))
    try:
        await asyncio.gather(sending.produce(), *workers)
    finally:
        for task in (*workers, *watching):
            task.cancel()
        committer.close()
        await commit_task
    for stopped in (*sending.auth_errors, *sending.halts):
        raise stopped
    for reason in (sending.tripwire and sending.tripwire.reason, watch and watch.reason):
        if reason:
            raise StoppedError(reason)


def _alarming(result: RowResult) -> bool:
    """Whether the failure guard counts ``result`` as a failure (``answers.alarming``): only
    ``failed`` rows, and not those a 409 or a 200 showing another state left open. Not
    ``not_found``: a 404 is a definite answer about the file's row, and stopping on it would
    only leave a run unfinished that has nothing left to learn."""
    decision = answers.Decision(result.outcome, result.confirmed, result.message, result.open)
    kind = answers.Kind(result.answer_kind) if result.answer_kind else None
    return answers.alarming(kind, decision)


class _Tripwire:
    """The failure guard at work: remembers the last outcomes and why it tripped."""

    def __init__(self, guard: FailureGuard, rows: int) -> None:
        self.guard = guard
        self.window = min(guard.window, max(guard.least, rows // 2))  # judged over this many
        self.recent: deque[bool] = deque(maxlen=self.window)
        self.reason: str | None = None  # set the first time it trips

    def trips(self, failed: bool) -> bool:
        """Record one answered row; True when the run must stop."""
        guard, recent, window = self.guard, self.recent, self.window
        recent.append(failed)
        if len(recent) == window and sum(recent) / window > guard.threshold:
            if self.reason is None:
                self.reason = (
                    f"{sum(recent)} of the last {window} rows failed (more than"
                    f" {guard.threshold:.0%}); the run was stopped to protect the rest"
                    " of the file"
                )
            return True
        return False


class _Sending:
    """One :func:`execute` call: a producer feeding ``concurrency`` workers through a queue."""

    def __init__(
        self,
        journal: Journal,
        client: Sender,
        committer: _Committer,
        concurrency: int,
        stop: asyncio.Event,
        on_result: Callable[[RowResult], None],
        guard: FailureGuard | None,
    ) -> None:
        self.journal = journal
        self.client = client
        self.committer = committer
        self.concurrency = concurrency
        self.stop = stop
        self.on_result = on_result
        self.queue: asyncio.Queue[PendingRow | None] = asyncio.Queue(maxsize=concurrency)
        self.auth_errors: list[AuthError] = []
        self.halts: list[Halted] = []  # calls that stopped the run (a wait too long)
        rows = sum(journal.pending_counts().values()) if guard else 0
        self.tripwire = _Tripwire(guard, rows) if guard else None

    async def produce(self) -> None:
        """Queue the pending rows in order until none is left or ``stop`` is set; then one
        ``None`` per worker."""
        after = 0
        while not self.stop.is_set():
            batch = self.journal.pending(after, limit=max(100, 4 * self.concurrency))
            if not batch:
                break
            for row in batch:
                if self.stop.is_set():
                    break
                await self.queue.put(row)
            after = batch[-1].row
        for _ in range(self.concurrency):
            await self.queue.put(None)

    async def work(self) -> None:
        """Send queued rows one at a time until the producer's ``None``."""
        while (row := await self.queue.get()) is not None:
            if self.stop.is_set():
                continue  # left pending: not_attempted, and a resume sends it
            await self._send_one(row)

    async def _send_one(self, row: PendingRow) -> None:
        """Intent committed, request sent, outcome queued for the next commit."""
        await self.committer.intent(row.row)
        try:
            answer = await _send(self.client, row)
        except AuthError as exc:
            # A 504 before the 401 (a key rotated meanwhile) may have been applied: the row stays
            # "may have been applied" through the stop and the resume.
            self.committer.release(row.row, facts_of(row, exc.maybe_applied).earlier)
            self.auth_errors.append(exc)
            self.stop.set()
            return
        except Halted as exc:  # no final answer: the run is stopping (or must: exc.stops_run)
            # Back to pending; an attempt that may have been applied keeps it "may have been
            # applied" (``earlier``) through the stop, to be settled by a read on resume.
            self.committer.release(row.row, facts_of(row, exc.ambiguous).earlier)
            if exc.stops_run:
                self.halts.append(exc)
                self.stop.set()
            return
        result = classify(row, answer)
        self.committer.result(result)
        self.on_result(result)
        # A 409, or a 200 showing another state, is no sign of a wrong target (only a read can
        # tell what it means).
        if self.tripwire and self.tripwire.trips(_alarming(result)):
            self.stop.set()


async def _send(client: Sender, row: PendingRow) -> CallResultLike:
    if row.action is Action.DEACTIVATE:
        return await client.deactivate(
            row.user_id, updated_by=row.updated_by or "", reason=row.reason
        )
    return await client.set_status(row.user_id, status=row.target_status, reason=row.reason)


async def send_pending(
    journal: Journal,
    client: Sender,
    *,
    concurrency: int,
    guard: FailureGuard | None,
    on_result: Callable[[RowResult], None],
    on_stopping: Callable[[str], None],
    on_notice: Callable[[str], None] = lambda _t: None,
    on_interruptible: Callable[[Callable[[str], None]], None] | None = None,
) -> str | None:
    """:func:`execute` as a run needs it: SIGINT/SIGTERM/SIGHUP stop it gracefully (the requests in
    flight get :data:`DRAIN_SECONDS` to finish), and a refused credential, the failure guard, a
    dead API (``retry.ApiWatch``, after the guard's ``give_up_after`` s) or a wait too long stop
    it too; waits the API asks for go to ``on_notice``. ``on_interruptible`` is handed a
    ``stop(reason)`` that stops it the same way from any thread (the web service's cancel).
    Returns why the run stopped early
    (``on_stopping`` heard it as soon as the requests in flight were done), or None.
    """
    stop = asyncio.Event()
    reasons: list[str] = []

    def interrupt(name: str) -> None:
        if not stop.is_set():
            reasons.append(f"interrupted ({name})")
            on_stopping(f"{name}: finishing the requests in flight, sending no more")
        stop.set()

    task = asyncio.create_task(
        execute(
            journal,
            client,
            concurrency=concurrency,
            stop=stop,
            on_result=on_result,
            guard=guard,
            watch=ApiWatch(stop, (guard or FailureGuard()).give_up_after, on_notice),
        )
    )
    if on_interruptible is not None:
        loop = asyncio.get_running_loop()

        def from_any_thread(reason: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the sends are over
                loop.call_soon_threadsafe(interrupt, reason)

        on_interruptible(from_any_thread)
    try:
        with _signals_stop(interrupt):
            await _wait_draining(task, stop)
    except StoppedError as exc:  # AuthError included
        reasons.append(str(exc))
        on_stopping(str(exc))
    return reasons[0] if reasons else None


@contextlib.contextmanager
def _signals_stop(interrupt: Callable[[str], None]) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal, an ssh session gone) stop the run
    gracefully while the block runs (main thread only); the handlers that were there before
    are put back after (asyncio alone would reset them to the defaults, which kill)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {sig: signal.getsignal(sig) for sig in signals}
    handled = []
    for sig in signals:
        # Another thread (the web service's worker) cannot take signals: it stops through
        # its own event instead.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, interrupt, sig.name)
            handled.append(sig)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
            if before[sig] is not None:
                signal.signal(sig, before[sig])


async def _wait_draining(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Wait for ``task``; once ``stop`` is set, give in-flight requests a bounded time."""
    stop_wait = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            done, _ = await asyncio.wait({task}, timeout=DRAIN_SECONDS)
            if task not in done:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stop_wait.cancel()
