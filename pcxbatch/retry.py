"""The retry policy: which answers are worth another attempt, how many attempts, and how long
to wait between them.

In: a :class:`RetryPolicy` (from the job's ``max_attempts``; tests switch jitter off), the
number of the attempt that failed, and the answer's ``Retry-After`` header. Out: the seconds to
wait. ``client`` runs the loop (the only module that knows HTTP); this module holds the policy
so that it reads in one place, like stamina's ``_config``. Standard library only.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

__all__ = [
    "AMBIGUOUS_STATUSES",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "RetryPolicy",
    "parse_retry_after",
]

#: Statuses worth another attempt: throttling and the gateway's integration failures.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses after which the attempt may have been applied: the integration may have run before
#: it failed (500, 502, an applied-then-503) or the gateway gave up waiting (504).
AMBIGUOUS_STATUSES = frozenset({500, 502, 503, 504})
#: A ``Retry-After`` longer than this is cut to it: a run should not hang for hours on one row.
MAX_RETRY_AFTER = 300.0

_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one call: ``max_attempts`` in all (the first included). Waits double from
    ``base_delay`` up to ``max_delay``; ``jitter`` picks each wait at random between half and
    all of it (tests switch it off). A ``Retry-After`` from the server wins over the backoff."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), without Retry-After."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        if self.jitter:
            # "Equal jitter": spread the retries of many workers, but never retry at once.
            delay = random.uniform(delay / 2, delay)
        return delay

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """The wait after failed attempt ``attempt``: what the server asked for when it sent a
        ``Retry-After`` (the client caps it at ``MAX_RETRY_AFTER``), else :meth:`backoff`."""
        return retry_after if retry_after is not None else self.backoff(attempt)


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
