"""The execute stage: send every pending row through the client and record what came back.

In: a :class:`~pcxbatch.journal.Journal` holding the checked rows, a client that can
``deactivate``/``set_status``, a concurrency, and a stop event (set by an interrupt or a guard).
Out: every row that was sent has its outcome in the journal; rows never reached stay pending (the
report shows them ``not_attempted``; a resume sends them). Raises
:class:`~pcxbatch.errors.AuthError` after draining when the API refused the credential, and
:class:`~pcxbatch.errors.StoppedError` when the failure guard tripped.

Pacing and retries live in the client and its limiter; this module decides what a final answer
means for a row (:func:`classify`) and keeps the journal's promise: an intent is committed before
a request leaves, an outcome right after the answer. Commits are grouped so one fsync serves all
the rows that became ready at the same moment.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pcxbatch.errors import AuthError, StoppedError
from pcxbatch.journal import Journal, PendingRow
from pcxbatch.model import DEACTIVATED_STATUS, Action, Outcome, RowResult


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
    """Stop the run when more than ``threshold`` of the last ``window`` sent rows failed.

    A wrong file or a broken key should not burn through a whole list. ``window`` rows must have
    been answered before the guard can trip.
    """

    threshold: float = 0.5
    window: int = 50


def classify(row: PendingRow, answer: CallResultLike) -> RowResult:
    """Turn the client's final answer for ``row`` into the row's outcome and message.

    A 409 to a deactivation means the user was already inactive (``unchanged``), unless an
    earlier attempt of ours may have gone through (a 504, a dropped connection, or a previous run
    that sent it without recording the answer): then that attempt made the change (``applied``).
    """
    status = answer.http_status
    ambiguous = answer.ambiguous or row.resent
    earlier = (
        "a previous run sent it without recording the answer"
        if row.resent and not answer.ambiguous
        else "an earlier attempt got no clear answer"
    )

    def result(outcome: Outcome, message: str) -> RowResult:
        return RowResult(
            row=row.row,
            outcome=outcome,
            http_status=status,
            attempts=answer.attempts,
            message=message,
            request_id=answer.request_id,
            throttled=answer.throttled,
            uncertain=ambiguous and outcome is Outcome.FAILED,
        )

    api_message = answer.message.strip()
    seen = row.seen_status
    was = f" (was {seen})" if seen else ""
    if status is not None and 200 <= status < 300:
        done = (
            "deactivated"
            if row.action is Action.DEACTIVATE
            else f"status set to {row.target_status}"
        )
        return result(Outcome.APPLIED, done + was)
    if status == 409:
        if row.action is Action.DEACTIVATE:
            if ambiguous:
                return result(
                    Outcome.APPLIED,
                    f"deactivated{was}: {earlier} and the API now says the user is already"
                    " inactive",
                )
            if seen and seen != DEACTIVATED_STATUS:
                return result(
                    Outcome.UNCHANGED,
                    f"changed since the preview: the user was {seen} then, and is already"
                    f" inactive now (409: {api_message})",
                )
            return result(Outcome.UNCHANGED, f"already inactive (409: {api_message})")
        if ambiguous:
            return result(
                Outcome.APPLIED,
                f"status set to {row.target_status}: {earlier} and the API now answers 409"
                f" ({api_message})",
            )
        # PCX does not say whether a 409 here means "already has this status" or "transition
        # refused"; reporting it as unchanged could hide a refused change, so it is failed.
        now = f"; the user was {seen} at the preview" if seen else ""
        return result(
            Outcome.FAILED,
            f"the API refused the change (409 conflict: {api_message}){now}; check the"
            " user's current status",
        )
    maybe = (
        f"; the change may have been applied ({earlier}): check before sending again"
        if ambiguous
        else ""
    )
    if status is None:
        return result(
            Outcome.FAILED,
            f"no answer from the API after {answer.attempts} attempt(s): {api_message}{maybe}",
        )
    if status == 404:
        drift = f"; changed since the preview, when the user existed ({seen})" if seen else ""
        return result(Outcome.FAILED, f"user not found (404: {api_message}){drift}{maybe}")
    if status == 400:
        return result(Outcome.FAILED, f"the API rejected the request (400: {api_message}){maybe}")
    if status == 429:
        return result(
            Outcome.FAILED,
            f"still throttled after {answer.attempts} attempt(s) (429: {api_message}){maybe}",
        )
    return result(
        Outcome.FAILED,
        f"HTTP {status} after {answer.attempts} attempt(s): {api_message}{maybe}",
    )


class _Committer:
    """Group commit: every intent and outcome that arrives while a commit runs shares the next."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._intents: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._results: list[RowResult] = []
        self._released: list[int] = []
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

    def release(self, row: int) -> None:
        """Queue ``row`` to go back to plain pending: it was sent but certainly not applied."""
        self._released.append(row)
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
) -> None:
    """Send every pending row of ``journal`` with up to ``concurrency`` requests in flight.

    Returns when every pending row has an outcome, or when ``stop`` was set (the rows not yet
    sent stay pending). ``on_result`` is called with each row's result as it is recorded.
    """
    queue: asyncio.Queue[PendingRow | None] = asyncio.Queue(maxsize=concurrency)
    committer = _Committer(journal)
    commit_task = asyncio.create_task(committer.run())
    auth_errors: list[AuthError] = []
    recent: deque[bool] = deque(maxlen=guard.window if guard else 1)
    tripped: list[str] = []

    async def produce() -> None:
        after = 0
        while not stop.is_set():
            batch = journal.pending(after, limit=max(100, 4 * concurrency))
            if not batch:
                break
            for row in batch:
                if stop.is_set():
                    break
                await queue.put(row)
            after = batch[-1].row
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while (row := await queue.get()) is not None:
            if stop.is_set():
                continue  # left pending: not_attempted, and a resume sends it
            await committer.intent(row.row)
            try:
                answer = await _send(client, row)
            except AuthError as exc:
                committer.release(row.row)
                auth_errors.append(exc)
                stop.set()
                continue
            result = classify(row, answer)
            committer.result(result)
            on_result(result)
            if guard:
                recent.append(result.outcome is Outcome.FAILED)
                if len(recent) == guard.window and sum(recent) / guard.window > guard.threshold:
                    if not tripped:
                        tripped.append(
                            f"{sum(recent)} of the last {guard.window} rows failed (more than"
                            f" {guard.threshold:.0%}); the run was stopped to protect the rest"
                            " of the file"
                        )
                    stop.set()

    workers = [asyncio.create_task(work()) for _ in range(concurrency)]
    try:
        await asyncio.gather(produce(), *workers)
    finally:
        for task in workers:
            task.cancel()
        committer.close()
        await commit_task
    if auth_errors:
        raise auth_errors[0]
    if tripped:
        raise StoppedError(tripped[0])


async def _send(client: Sender, row: PendingRow) -> CallResultLike:
    if row.action is Action.DEACTIVATE:
        return await client.deactivate(
            row.user_id, updated_by=row.updated_by or "", reason=row.reason
        )
    return await client.set_status(row.user_id, status=row.target_status, reason=row.reason)
