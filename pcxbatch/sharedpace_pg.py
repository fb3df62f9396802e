"""The shared pacing store on PostgreSQL: sharers of one API key on several hosts.

In: a ``postgresql://`` URL and, per request, the key's non-secret name, rate and burst. Out:
the same :meth:`reserve`/:meth:`hold` as :class:`pcxbatch.sharedpace.SlotStore`, with the GCRA
rule decided by one statement on the database's clock (``clock_timestamp()``), so the hosts'
own clocks never matter; ``clock`` may be given instead (tests), and is then sent with each
statement. The only module that uses ``psycopg``.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS pcxbatch_pace (key TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT NULL)"
)
# CREATE TABLE IF NOT EXISTS is not safe against itself: two sharers starting at once on a new
# database could both try, and one fail on the duplicate type. One at a time, then: the lock is
# held until the transaction that made the table commits.
_SCHEMA_LOCK = 0x70637870  # "pcxp"
# One statement: now is read once; the row is locked by the upsert; the new TAT is
# max(TAT, now) + interval (EXCLUDED.tat is now + interval), and the slot is
# max(now, new TAT - burst * interval), which is max(now, old TAT - (burst - 1) * interval).
_RESERVE = """
WITH t AS (SELECT COALESCE(%(now)s::double precision, extract(epoch FROM clock_timestamp())) AS now)
INSERT INTO pcxbatch_pace AS p (key, tat) SELECT %(key)s, t.now + %(interval)s FROM t
ON CONFLICT (key) DO UPDATE SET tat = greatest(p.tat, EXCLUDED.tat - %(interval)s) + %(interval)s
RETURNING greatest(0, p.tat - %(burst)s * %(interval)s - (SELECT now FROM t))
"""
_HOLD = """
WITH t AS (SELECT COALESCE(%(now)s::double precision, extract(epoch FROM clock_timestamp())) AS now)
INSERT INTO pcxbatch_pace AS p (key, tat) SELECT %(key)s, t.now + %(seconds)s + %(lead)s FROM t
ON CONFLICT (key) DO UPDATE SET tat = greatest(p.tat, EXCLUDED.tat)
"""


class PgSlotStore:
    """GCRA slots per key in a PostgreSQL table, shared by every process of every host."""

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self._db = psycopg.connect(url, autocommit=True)
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self._db.execute(_SCHEMA)

    def reserve(self, key: str, rate: float, burst: int = 1) -> float:
        """Reserve the next slot of ``key``; the seconds to wait for it."""
        params = {"now": self._now(), "key": key, "interval": 1.0 / rate, "burst": burst}
        row = self._db.execute(_RESERVE, params).fetchone()
        assert row is not None
        return float(row[0])

    def hold(self, key: str, seconds: float, rate: float, burst: int = 1) -> None:
        """No sharer of ``key`` gets a slot sooner than ``seconds`` from now."""
        lead = (burst - 1) / rate  # the burst's allowance would let slots in that much sooner
        self._db.execute(_HOLD, {"now": self._now(), "key": key, "seconds": seconds, "lead": lead})

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _now(self) -> float | None:
        return self.clock() if self.clock is not None else None
