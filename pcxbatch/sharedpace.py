"""Pacing shared by every run on one API key: GCRA slots held in a small SQLite file.

In: the key's non-secret name (never the secret), the rate (requests/s) and burst every sharer
keeps, and the store's file (default ``$XDG_CACHE_HOME/pcxbatch/pacing.sqlite``). Out:
:meth:`SlotStore.reserve`, the time to wait before the caller's request may go, and
:class:`SharedPacer`, a pacer (``acquire``/``on_success``/``on_throttled``) over it.

GCRA, as the API's gateway meters it: the store keeps one *theoretical arrival time* (TAT) per
key. A request reserves the slot ``max(now, TAT - (burst - 1) * interval)``, moves the TAT to
``max(TAT, now) + interval``, and sleeps until its slot; so however many processes share the
key, together they send at most ``burst`` at once and then one per interval, in the order they
asked, and no window lets a whole second's quota out at once. A 429 seen by one sharer holds
every sharer's next slot back (:meth:`SlotStore.hold`). Each reservation is one short ``BEGIN
IMMEDIATE`` transaction, serialised by SQLite across processes; losing the file loses only
pacing state, so it is written without fsync. Time comes from ``clock`` (default: the host's
wall clock, the one clock every process on the host shares), so tests never sleep. A store on
PostgreSQL, for sharers on several hosts, would keep the same rule on the database's clock.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pcxbatch.errors import UnusableError
from pcxbatch.journal import ImmediateTransaction

if TYPE_CHECKING:
    from pcxbatch.limiter import Limiter, Pacer

_SCHEMA = "CREATE TABLE IF NOT EXISTS pace (key TEXT PRIMARY KEY, tat REAL NOT NULL)"


def default_store_path() -> Path:
    """Where the host's pacing file lives: the user's cache folder."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pcxbatch" / "pacing.sqlite"


class SlotStore:
    """GCRA slots per key in one SQLite file, shared by every process that opens it."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # pacing state: losing it costs nothing
        self._db.execute(_SCHEMA)
        os.chmod(path, 0o600)

    def reserve(self, key: str, rate: float, burst: int = 1) -> float:
        """Reserve the next slot of ``key`` at ``rate``/s (``burst`` at once at most); return
        the seconds to wait for it (0 when it is now)."""
        interval = 1.0 / rate
        with self._transaction():
            now = self.clock()
            tat = self._tat(key, now)
            slot = max(now, tat - (burst - 1) * interval)
            self._set(key, max(tat, now) + interval)
        return slot - now

    def hold(self, key: str, seconds: float, rate: float, burst: int = 1) -> None:
        """No sharer of ``key`` (at ``rate``, ``burst``) gets a slot sooner than ``seconds``
        from now: a ``Retry-After`` seen by one holds all back."""
        lead = (burst - 1) / rate  # the burst's allowance would let slots in that much sooner
        with self._transaction():
            now = self.clock()
            self._set(key, max(self._tat(key, now), now + seconds + lead))

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def _tat(self, key: str, now: float) -> float:
        row = self._db.execute("SELECT tat FROM pace WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else now

    def _set(self, key: str, tat: float) -> None:
        self._db.execute(
            "INSERT INTO pace(key, tat) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET tat = ?",
            (key, tat, tat),
        )

    def _transaction(self) -> ImmediateTransaction:
        return ImmediateTransaction(self._db)


class SharedPacer:
    """A run's pacer whose slots also come from a store shared with the key's other runs.

    ``local`` is the run's own pacer (it still learns a lower limit from 429s, and pauses for a
    ``Retry-After``); the store keeps every sharer together within the stated ``rate``. The
    slots this run takes from the store are spaced at the pace ``local`` keeps now, so a 429
    seen here slows every sharer: the key's next slot moves on by this run's wider interval
    each time it sends. A ``Retry-After`` seen here holds every sharer back for that long.
    (A fixed hold after a 429 without one was tried: the requests waiting behind it then left
    at the stated rate, in a burst the API throttled again, and a run told too high a rate
    got through about 10 % fewer rows than alone; ``bench/RESULTS.md``.)
    """

    def __init__(self, local: Limiter, store: Store, key: str, rate: float, burst: int = 1) -> None:
        self.local, self.store, self.key = local, store, key
        self.rate, self.burst = rate, burst

    async def acquire(self) -> None:
        """Return at a slot both the run's own pace and the key's shared one allow."""
        await self.local.acquire()
        rate = min(self.rate, self.local.rate)  # lower than the stated rate after a 429
        wait = self.store.reserve(self.key, rate, self.burst)
        if wait > 0:
            await asyncio.sleep(wait)

    def on_success(self) -> None:
        """Tell the run's own pacer."""
        self.local.on_success()

    def on_throttled(self, retry_after: float | None = None) -> None:
        """Tell the run's own pacer (which slows, and every sharer with it); a ``Retry-After``
        holds every sharer back for that long: the key's limit is theirs."""
        self.local.on_throttled(retry_after)
        if retry_after is not None and retry_after > 0:
            self.store.hold(self.key, retry_after, self.rate, self.burst)


class Store(Protocol):
    """A pacing store: :class:`SlotStore` here, ``sharedpace_pg.PgSlotStore`` across hosts."""

    def reserve(self, key: str, rate: float, burst: int = 1) -> float: ...

    def hold(self, key: str, seconds: float, rate: float, burst: int = 1) -> None: ...


STORE_ENV = "PCXBATCH_PACING_STORE"


def shared_pacer(
    local: Limiter, where: str | None, key: str | None, rate: float, burst: int
) -> Pacer:
    """``local`` paced together with every run on the same key through the store ``where``
    names (the job's ``pacing_store``, else ``PCXBATCH_PACING_STORE``, else the user's cache
    folder): ``off``, or a credential with no non-secret name (``key`` None), leaves ``local``
    alone. A store named on purpose that cannot be opened is refused (:class:`UnusableError`);
    the default one, in a cache folder that cannot be written, just leaves ``local`` alone."""
    where = (where or os.environ.get(STORE_ENV) or "").strip()
    if key is None or where.lower() == "off":
        return local
    try:
        store = open_store(where)
    except Exception as exc:  # a named store must work; the default one may be left out
        if not where:
            return local
        raise UnusableError(f"pacing_store {where}: cannot be used: {exc}") from None
    return SharedPacer(local, store, key, rate, burst)


def open_store(where: str) -> Store:
    """The store a ``pacing_store`` names ("" : the user's cache folder's file)."""
    if where.startswith(("postgresql://", "postgres://")):
        from pcxbatch.sharedpace_pg import PgSlotStore

        return PgSlotStore(where)
    return SlotStore(Path(where).expanduser() if where else default_store_path())
