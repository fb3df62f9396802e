"""Pacing: when the next request of a run may be sent.

In: the configured rate (requests/s) and burst, then the answers as they come (``on_success``
for any answer that is not a 429, ``on_throttled`` for a 429). Out: ``await acquire()``
returns when a request may go; ``rate`` says the pace currently kept.

One :class:`Limiter` is shared by every request of a run, retries included, because PCX limits
per API key, not per connection. Sends are paced by a token bucket (kept in time units, as
GCRA does, so that rate changes are simple) that holds at most ``burst`` tokens and **starts
with ``burst`` tokens**: with the default ``burst=1`` requests go out evenly spaced from the
very first one, never as a start-up burst, and idle time never saves up more than ``burst``.
Waiters are served in arrival order (FIFO). A waiter that a busy event loop wakes a little late
is counted at the time its slot was due (up to 20 ms), so that at high rates the loop's
lateness does not slowly eat the configured rate.

Adaptive pacing (``adaptive=True``): the configured rate may be higher than what the key is
allowed, and nobody tells us the real figure (API Gateway answers 429, as a rule without
``Retry-After``). So the limiter learns it, like TCP congestion control but in requests/s:

- On a 429 the rate is cut multiplicatively, once per round trip: a 429 for a request that was
  sent before the last cut is old news and does not cut again (otherwise the dozens of
  requests in flight at the old pace would cut the rate to nothing; "sent before" is known
  because the same task calls ``acquire`` and then ``on_*``; an answer from a task that took
  no slot counts as new). The cut is small (10 %)
  when the request had some success before it since the last cut (we are at the edge), and
  larger (30 %) when the first answer after a cut is again a 429 (still far above).
- The rate at which the last 429 came is remembered as the *ceiling*. After a success that
  confirms the cut, the rate climbs back additively: quickly up to 90 % of the ceiling, then
  slowly around it, so the steady state sits just under the server's limit instead of
  oscillating widely. Climbing well past the old ceiling without a 429 forgets it (the limit
  was raised, or another job sharing the key stopped) and the climb speeds up again.
- The rate never exceeds the configured one, and never drops below 1/1000 of it (of the
  starting rate when finding the limit).
- A ``Retry-After`` pauses every sender until that time.

Finding an unknown limit (:meth:`Limiter.finding`, ``--rate auto``): the same controller,
started low (:data:`AUTO_START` requests/s) with ``max_rate`` as the configured rate, plus a
*slow start*: until the first 429 the rate grows exponentially (:data:`_PROBE_CLIMB`, e-fold
per second: against a gateway bucket the run passes 0.95 x 200/s after about 3.5 s and
0.95 x 1,000/s after about 5.5 s), then the AIMD above takes over. What it costs in 429s: some
ten while the slow start overshoots and the cuts bring it back, then one per probe above the
ceiling, about every 5 s (at 20/s that is 1 % of the requests; at 200/s 0.1 %).
Why AIMD and not a probing scheme that reads the server's limit off its answers: API Gateway
sends no rate-limit headers and as a rule no ``Retry-After``; a 429 is the only signal there
is, and one per round trip is what AIMD needs (a ``Retry-After``, when sent, still pauses every
sender). The rate only grows while it is at most :data:`_HEADROOM` times the rate actually sent
(counted over the last half second): a run held back by its concurrency or the API's latency
would otherwise "grow" its rate to ``max_rate`` unseen, then send a burst the moment it could
(TCP's congestion-window validation, RFC 7661, for the same reason). It is
opt-in: probing past a shared key's limit costs everyone on that key a few 429s.

What a client needs from pacing is :class:`Pacer` (``acquire``, ``on_success``,
``on_throttled``): a limiter whose state lives in a store shared by several processes can take
this one's place.

Time comes from ``clock`` (default: the running event loop's ``time()``) and waiting uses
``asyncio.sleep``, so tests on a virtual-time loop never sleep for real.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable
from typing import Protocol

__all__ = ["AUTO_START", "Limiter", "Pacer"]


class Pacer(Protocol):
    """When requests may go, and what their answers say about the pace (the client's view)."""

    async def acquire(self) -> None:
        """Return when the next request may be sent."""
        ...

    def on_success(self) -> None:
        """An answer that was not a 429 arrived."""
        ...

    def on_throttled(self, retry_after: float | None = None) -> None:
        """A 429 arrived; ``retry_after`` is the server's ``Retry-After`` in seconds, if any."""
        ...


#: When each task last got a slot. ``on_success``/``on_throttled`` are called by the same task
#: (retries run in the caller's task), so they can tell whether the answer is to a request sent
#: before or after the last rate cut without changing the ``acquire()`` signature.
_sent_at: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "pcxbatch_limiter_sent_at", default=None
)

_SMALL_CUT = 0.90  # at the edge: a single probe went too far
_LARGE_CUT = 0.70  # still throttled right after a cut: far above the limit
_FAST_ZONE = 0.90  # below this share of the ceiling, climb quickly
_FAST_CLIMB = 0.50  # ceiling-shares per second, below the fast zone
_SLOW_CLIMB = 0.02  # ceiling-shares per second, near and above the ceiling
_FREE_CLIMB = 0.10  # rate-shares per second when no ceiling is known
_FORGET_ABOVE = 1.10  # this far above the ceiling without a 429, forget the ceiling
_FLOOR_SHARE = 0.001  # lowest rate, as a share of the configured one
_LATE_CREDIT = 0.02  # seconds of event-loop lateness a waiting request is not charged for
#: ``--rate auto``: the rate a run starts at (the default stated rate) ...
AUTO_START = 10.0
_PROBE_CLIMB = 1.0  # ... and its slow start: rate-shares per second until the first 429
_HEADROOM = 2.5  # ... and it grows only while under this many times the rate actually sent
_WINDOW = 0.5  # seconds over which the rate actually sent is counted


class Limiter:
    """Paces the sends of a run (see the module docstring).

    ``rate`` is the configured (maximum) rate in requests/s, ``math.inf`` for no pacing;
    ``burst`` the bucket size (and the number of tokens it starts with). With
    ``adaptive=False`` the rate stays fixed and only ``Retry-After`` pauses.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        adaptive: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._max_rate = float(rate)
        self._rate = float(rate)
        self._floor = self._max_rate * _FLOOR_SHARE
        self._burst = float(burst)
        self._adaptive = adaptive and math.isfinite(rate)
        self._clock = clock
        self._lock = asyncio.Lock()  # FIFO: the head waiter holds it while waiting for its slot
        # GCRA ("virtual scheduling", the token bucket in time units): ``_tat`` is when the
        # bucket would be empty again; a request may go once ``now >= _tat - tolerance``.
        self._tat = -math.inf
        # Adaptive state.
        self._ceiling: float | None = None
        self._last_cut: float = -math.inf
        self._ok_since_cut = 0  # successes for requests sent after the last cut
        self._grown_at: float | None = None
        self._finding = False  # ``finding``: the limit is unknown (``--rate auto``) ...
        self._probing = False  # ... and no 429 has been seen yet: slow start
        # The rate actually sent, counted over windows of _WINDOW seconds (``finding`` only).
        self._sent_rate = 0.0
        self._window_at: float | None = None
        self._window_sends = 0

    @classmethod
    def finding(
        cls,
        max_rate: float,
        burst: int = 1,
        *,
        start: float = AUTO_START,
        clock: Callable[[], float] | None = None,
    ) -> Limiter:
        """A limiter that finds the server's limit (``--rate auto``; the module docstring):
        it starts at ``start`` requests/s (at most ``max_rate``) and never exceeds ``max_rate``."""
        if not (math.isfinite(max_rate) and max_rate > 0):
            raise ValueError(f"max_rate must be a positive number, not {max_rate!r}")
        limiter = cls(max_rate, burst, clock=clock)
        limiter._rate = min(float(start), limiter._max_rate)
        limiter._floor = limiter._rate * _FLOOR_SHARE
        limiter._sent_rate = limiter._rate
        limiter._finding = limiter._probing = True
        return limiter

    @property
    def rate(self) -> float:
        """The pace currently kept, in requests/s (at most the configured rate)."""
        return self._rate

    @property
    def max_rate(self) -> float:
        """The configured rate."""
        return self._max_rate

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def _interval(self) -> float:
        return 0.0 if math.isinf(self._rate) else 1.0 / self._rate

    def _next_slot(self) -> float:
        """The earliest time the next request may be sent."""
        return self._tat - (self._burst - 1.0) * self._interval()

    async def acquire(self) -> None:
        """Wait for the next send slot; callers are served in the order they arrived."""
        arrived = self._now()
        if math.isinf(self._rate) and self._next_slot() <= arrived and not self._lock.locked():
            _sent_at.set(arrived)
            return
        async with self._lock:
            while True:
                now = self._now()
                slot = self._next_slot()
                if slot <= now:
                    break
                # Re-check after waking: a cut or a pause may have moved the slot meanwhile.
                await asyncio.sleep(slot - now)
            # A request that was already waiting is counted at the time it was due, not at the
            # (slightly later) time a busy event loop woke it: at hundreds of requests/s those
            # lost fractions would otherwise add up to a much slower run. The allowance is
            # bounded (_LATE_CREDIT), and idle time never earns credit: ``arrived`` bounds it.
            due = max(slot, arrived, now - _LATE_CREDIT)
            self._tat = max(self._tat, due) + self._interval()
            if self._finding:
                self._count_send(now)
            _sent_at.set(now)

    def _count_send(self, now: float) -> None:
        if self._window_at is None:
            self._window_at = now
        self._window_sends += 1
        if now - self._window_at >= _WINDOW:
            self._sent_rate = self._window_sends / (now - self._window_at)
            self._window_at, self._window_sends = now, 0

    def _fresh(self) -> bool:
        """Is the current task's answer about a request sent after the last cut?"""
        sent = _sent_at.get()
        return sent is None or sent >= self._last_cut

    def on_throttled(self, retry_after: float | None = None) -> None:
        """A 429 was seen; ``retry_after`` is the server's ``Retry-After`` in seconds, if any."""
        now = self._now()
        if retry_after is not None and retry_after > 0:
            # Nothing before ``now + retry_after``, then one request, then the (cut) pace: the
            # pause replaces the bucket's savings, so no burst follows it.
            until = now + retry_after
            self._tat = max(self._tat, until + (self._burst - 1.0) * self._interval())
        if not self._adaptive or not self._fresh():
            return
        cut = _SMALL_CUT if self._ok_since_cut > 0 else _LARGE_CUT
        self._ceiling = self._rate
        self._rate = max(self._floor, self._rate * cut)
        self._last_cut = now
        self._ok_since_cut = 0
        self._grown_at = None
        self._probing = False  # the slow start ends at the first 429

    def on_success(self) -> None:
        """An answer that was not a 429 arrived (any other status counts: it was not throttled)."""
        if not self._adaptive or not self._fresh():
            return
        now = self._now()
        self._ok_since_cut += 1
        if self._rate >= self._max_rate:
            return
        if self._grown_at is None:
            # The first confirmation after a cut starts the climb; it does not jump.
            self._grown_at = now
            return
        elapsed = now - self._grown_at
        if elapsed <= 0:
            return
        self._grown_at = now
        top = self._max_rate
        if self._finding:
            # A run that sends far below its pace (its concurrency or the API's latency holds
            # it back) would grow a pace never tested against the server: hold it there.
            top = min(top, max(self._rate, _HEADROOM * self._sent_rate))
        self._rate = min(top, self._rate + self._climb_speed() * elapsed)
        if self._ceiling is not None and self._rate > self._ceiling * _FORGET_ABOVE:
            self._ceiling = None

    def _climb_speed(self) -> float:
        """How fast the rate grows now, in (requests/s) per second."""
        ceiling = self._ceiling
        if ceiling is None:
            return (_PROBE_CLIMB if self._probing else _FREE_CLIMB) * self._rate
        if self._rate < ceiling * _FAST_ZONE:
            return _FAST_CLIMB * ceiling
        return _SLOW_CLIMB * ceiling
