"""API Gateway's throttle: a token bucket per credential (steady rate plus burst).

In: a rate (tokens/s), a capacity (burst) and the current time from the caller's clock, so tests
drive it on a virtual clock. Out: whether a request may pass and, when not, how long until it
could. Like Gateway, the bucket starts full: the first ``burst`` requests pass at once.
"""

from __future__ import annotations


class TokenBucket:
    """One bucket. Not thread-safe on its own: the sandbox calls it under its lock."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> float:
        """Take one token at time ``now``: 0.0 if granted, else seconds until one is available."""
        # A clock that steps backwards (virtual clocks in tests) must not mint tokens.
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
