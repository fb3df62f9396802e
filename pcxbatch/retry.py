"""When a call tries again, how long it waits, and when a run gives up on the API.

In: the job's limits (``max_attempts``, ``max_retry_wait``, ``give_up_after``; tests switch
jitter off), an attempt function from ``client`` (the only module that knows HTTP), and the
answers its attempts get. Out: the last :class:`Attempt` of each call, or an error that stops
the run. Loop and policy read in one place, like stamina's ``_core`` and ``_config``:

- :class:`RetryPolicy`: which answers are retried, how often, how long to wait (backoff with
  jitter, or the server's ``Retry-After``), and the longest wait honoured.
- :class:`Retrier`: the loop over one call's attempts; it logs each attempt and tells the
  run's :class:`AttemptListener` about it, and its :class:`Brake` stops new attempts.
- :class:`ApiWatch`: the run's listener; when attempts keep failing with no sign of life
  (:func:`shows_life`) for ``give_up_after`` seconds, it stops the run.

Standard library only. Errors (both :class:`~pcxbatch.errors.StoppedError`, exit 3)::

    Halted          a call gave up without a final answer because the run is stopping
    └── WaitTooLong the server asked to wait longer than ``max_retry_wait``: the run stops
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import math
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from pcxbatch.errors import StoppedError

__all__ = [
    "AMBIGUOUS_STATUSES",
    "DEADLINE",
    "GIVE_UP_AFTER",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "ApiWatch",
    "Attempt",
    "AttemptListener",
    "Brake",
    "Halted",
    "Retrier",
    "RetryPolicy",
    "Tally",
    "WaitTooLong",
    "Watched",
    "parse_retry_after",
    "shows_life",
]

log = logging.getLogger("pcxbatch.client")  # its lines belong with the client's

#: Statuses worth another attempt: throttling and the gateway's integration failures.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses after which the attempt may have been applied: the integration may have run before
#: it failed (500, 502, an applied-then-503) or the gateway gave up waiting (504).
AMBIGUOUS_STATUSES = frozenset({500, 502, 503, 504})
#: The default longest ``Retry-After`` a run waits for (job key ``max_retry_wait``); a longer
#: one stops the run (resumable) instead of hanging it for hours on one row.
MAX_RETRY_AFTER = 300.0
#: The default total deadline of one attempt, body read included (job key ``request_timeout``):
#: longer than API Gateway's ~29 s integration timeout, so that its 504 is seen, not guessed.
DEADLINE = 60.0
#: The default time attempts may go on failing with no answer before a run stops (job key
#: ``give_up_after``; :class:`ApiWatch`).
GIVE_UP_AFTER = 60.0
#: Waits the server asks for (``Retry-After``) at least this long are told to the person.
NOTICE_WAIT = 5.0

_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class Attempt:
    """One attempt, boiled down to what we keep (no response object, no headers): the status
    (``None``: no answer), the API's message or what went wrong, the ``x-amzn-RequestId``, the
    JSON body, the ``Retry-After`` in seconds and as sent (``retry_header``), whether it is worth
    another attempt, and for no answer the kind of ``failure`` (see ``PcxClient.probe``)."""

    status: int | None
    message: str
    request_id: str | None
    body: dict[str, Any] | None
    retry_after: float | None
    retryable: bool
    failure: str | None = None
    retry_header: str | None = None
    seconds: float = 0.0  # how long the exchange took (the wait for a send slot not included)


@dataclass
class Tally:
    """What the attempts of one call add up to."""

    attempts: int = 0
    throttled: int = 0
    ambiguous: bool = False  # an attempt may have been applied without our seeing it succeed
    request_id: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one call: ``max_attempts`` in all (the first included). Waits double from
    ``base_delay`` up to ``max_delay``; ``jitter`` picks each wait at random between half and
    all of it (tests switch it off). A ``Retry-After`` from the server wins over the backoff."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True
    #: The longest ``Retry-After`` honoured; a longer one raises :class:`WaitTooLong`.
    max_wait: float = MAX_RETRY_AFTER

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), without Retry-After."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        if self.jitter:
            # "Equal jitter": spread the retries of many workers, but never retry at once.
            delay = random.uniform(delay / 2, delay)
        return delay

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """The wait after failed attempt ``attempt``: what the server asked for when it sent a
        ``Retry-After`` (see :meth:`check_wait`), else :meth:`backoff`."""
        return retry_after if retry_after is not None else self.backoff(attempt)

    def check_wait(self, retry_after: float | None, header: str | None, ambiguous: bool) -> None:
        """Raise :class:`WaitTooLong` when ``retry_after`` is more than :attr:`max_wait`."""
        if retry_after is not None and retry_after > self.max_wait:
            raise WaitTooLong(retry_after, header, self.max_wait, ambiguous=ambiguous)


def shows_life(status: int | None, retry_after: float | None) -> bool:
    """Does this answer show that the API is there? Any HTTP answer does, except a 5xx without
    ``Retry-After`` (the gateway failing, nothing behind it answering). A 429, or a 503 with
    ``Retry-After``, is throttling: the API is there and asks us to slow down."""
    if status is None:
        return False
    return status < 500 or retry_after is not None


class Halted(StoppedError):
    """A call gave up without a final answer because the run is stopping (``stops_run`` False)
    or must stop (``stops_run`` True). ``ambiguous``: an earlier attempt may have been applied,
    so the row must be sent again (and settled) by the resumed run, not forgotten."""

    stops_run = False

    def __init__(self, message: str, *, ambiguous: bool) -> None:
        self.ambiguous = ambiguous
        super().__init__(message)


class WaitTooLong(Halted):
    """The server asked to wait longer than the job allows (``max_retry_wait``)."""

    stops_run = True

    def __init__(
        self, seconds: float, header: str | None, allowed: float, *, ambiguous: bool
    ) -> None:
        self.seconds = seconds
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        named = f"Retry-After: {header.strip()[:40]}" if header else "Retry-After"
        super().__init__(
            f"the API asked to wait {_duration(seconds)} ({named}; until about"
            f" {until:%Y-%m-%d %H:%M} UTC), longer than the job's max_retry_wait of"
            f" {_duration(allowed)}; run the same command again after that time to resume",
            ambiguous=ambiguous,
        )


def _duration(seconds: float) -> str:
    """``45 s``, ``5 min``, ``24 h``: a wait as a person reads it."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


class AttemptListener(Protocol):
    """Hears about every attempt of every call (a run's :class:`ApiWatch`)."""

    def attempted(self, alive: bool, what: str) -> None:
        """An attempt ended; ``alive``: its answer shows the API is there (:func:`shows_life`);
        ``what`` says what came back, for a person."""
        ...

    def pausing(self, seconds: float, what: str) -> None:
        """A call waits ``seconds`` because the server asked (``what``: its ``Retry-After``)."""
        ...


class Brake:
    """The switch that stops a run's calls: once :meth:`apply` is called, :meth:`wait` raises
    :class:`Halted` instead of waiting (for a send slot, or between attempts), and waits already
    under way end at once. A request already on the wire is not touched: it finishes."""

    def __init__(self) -> None:
        self.applied = False
        self._waits: set[asyncio.Timeout] = set()

    def apply(self) -> None:
        """Cut every wait short, now and from now on."""
        self.applied = True
        for cut in self._waits:
            cut.reschedule(asyncio.get_running_loop().time())

    async def wait(self, waiting: Callable[[], Awaitable[object]], *, ambiguous: bool) -> None:
        """Await ``waiting()`` unless the brake is (or gets) applied; then raise :class:`Halted`
        (``ambiguous``: whether an earlier attempt of the call may have been applied)."""
        if not self.applied:
            try:
                async with asyncio.timeout(None) as cut:
                    self._waits.add(cut)
                    try:
                        await waiting()
                    finally:
                        self._waits.discard(cut)
                return
            except TimeoutError:
                if not self.applied:
                    raise
        raise Halted("the run is stopping: no new attempt", ambiguous=ambiguous)


class Retrier:
    """Runs the attempts of a client's calls under one :class:`RetryPolicy`, and is where the
    run hears about them (``listener``) and stops them (``brake``).

    ``sleep`` waits between attempts (tests: a fake that returns at once).
    """

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.policy = policy
        self.sleep = sleep
        self.brake = Brake()
        self.listener: AttemptListener | None = None

    async def run(
        self, attempt: Callable[[], Awaitable[Attempt]], tally: Tally, *, attempts: int, name: str
    ) -> Attempt:
        """Attempt; while the answer is retryable and fewer than ``attempts`` were made, wait
        (:meth:`RetryPolicy.wait`, cut short by the brake) and attempt again; return the last
        answer. Raises :class:`WaitTooLong` for a ``Retry-After`` over the policy's
        ``max_wait`` (even on the last attempt: every later row would meet it too), and
        :class:`Halted` once the brake is on. ``name`` ("PUT /v1/users/…") is for the log.

        A plain loop rather than a ``tenacity.AsyncRetrying`` per call: the policy reads in
        these lines, and costs nothing per request. A tenacity controller cannot be shared by
        concurrent calls (it keeps the iteration on itself), and building and driving one cost
        45-55 us of CPU per call on this machine, about 5 % of a request (bench/RESULTS.md).
        """
        last = await self._once(attempt, tally, name)
        while last.retryable:
            self.policy.check_wait(last.retry_after, last.retry_header, tally.ambiguous)
            if tally.attempts >= attempts:
                break
            wait = self.policy.wait(tally.attempts, last.retry_after)
            log.debug("%s: retrying in %.2f s", name, wait)
            if last.retry_after is not None and self.listener is not None:
                self.listener.pausing(wait, f"{last.status} with Retry-After: {last.retry_header}")
            await self.brake.wait(functools.partial(self.sleep, wait), ambiguous=tally.ambiguous)
            last = await self._once(attempt, tally, name)
        return last

    async def _once(
        self, attempt: Callable[[], Awaitable[Attempt]], tally: Tally, name: str
    ) -> Attempt:
        """One attempt, logged (method, path, status or failure, time; never a header) and told
        to the listener."""
        last = await attempt()
        what = f"HTTP {last.status}" if last.status is not None else last.message
        ms = last.seconds * 1000
        log.debug("%s -> %s in %.0f ms (attempt %d)", name, what, ms, tally.attempts)
        if self.listener is not None:
            self.listener.attempted(shows_life(last.status, last.retry_after), what)
        return last


@runtime_checkable
class Watched(Protocol):
    """A client whose attempts a run can watch and stop (``pcxbatch.client.PcxClient``)."""

    base_url: str

    def listen(self, listener: AttemptListener) -> None: ...
    def halt(self) -> None: ...


class ApiWatch:
    """The dead-API watch: stops a run once its attempts went on failing for ``give_up_after``
    seconds with no sign of life from the API (event-loop time, so virtual in tests).

    The client tells it of every attempt (``AttemptListener``). A sign of life (any HTTP answer
    but a 5xx without ``Retry-After``: throttling is life) ends a failing spell; a failure with no
    answer (refused, timed out, dropped, 5xx) starts one. A spell of at least two failures that
    lasts ``give_up_after`` seconds sets ``stop`` and keeps the ``reason``. A lone failure on a
    slowly paced run is no spell. Waits the server asked for go to ``notice``, once each.
    """

    def __init__(
        self, stop: asyncio.Event, give_up_after: float, notice: Callable[[str], None]
    ) -> None:
        self.stop, self.give_up_after, self.notice = stop, give_up_after, notice
        self.reason: str | None = None
        self.where = "the API"
        self._since: float | None = None  # when the failing spell began
        self._failures, self._last = 0, ""
        self._noticed_until = -math.inf
        self._changed = asyncio.Event()  # a failure came

    def attempted(self, alive: bool, what: str) -> None:
        if alive:
            self._since, self._failures = None, 0
            return
        if self._since is None:
            self._since = asyncio.get_running_loop().time()
        self._failures, self._last = self._failures + 1, what
        self._changed.set()
        self._check()

    def pausing(self, seconds: float, what: str) -> None:
        until = asyncio.get_running_loop().time() + seconds
        if seconds >= NOTICE_WAIT and until > self._noticed_until + 1:
            self._noticed_until = until
            when = datetime.now(UTC) + timedelta(seconds=seconds)
            self.notice(f"the API answered {what}: waiting {seconds:g} s (to {when:%H:%M:%S} UTC)")

    async def watch(self, client: Watched) -> None:
        """Listen to ``client``'s attempts until the run stops (for any reason: this watch, the
        failure guard, an interrupt); then halt them, so no row starts a new attempt."""
        self.where = f"the API at {urllib.parse.urlsplit(client.base_url).netloc}"
        client.listen(self)
        timer = asyncio.create_task(self._run())
        try:
            await self.stop.wait()
        finally:
            timer.cancel()
        client.halt()

    async def _run(self) -> None:
        """Check each failing spell when it has lasted ``give_up_after``, until one trips
        (failures that come later are checked as they come)."""
        loop = asyncio.get_running_loop()
        while self.reason is None:
            self._changed.clear()
            since = self._since
            if since is not None and loop.time() < since + self.give_up_after:
                await asyncio.sleep(since + self.give_up_after - loop.time())
            else:  # no spell yet, or one failure so far: wait for the next one
                await self._changed.wait()
            self._check()

    def _check(self) -> None:
        since = self._since
        if since is None or self._failures < 2 or self.reason is not None:
            return
        if asyncio.get_running_loop().time() - since >= self.give_up_after:
            self.reason = (
                f"{self.where} has not answered for {self.give_up_after:g} s ({self._failures}"
                f" attempts; the last: {self._last}); stopped rather than fail every row:"
                " run the same command again when the API is back"
            )
            self.stop.set()
