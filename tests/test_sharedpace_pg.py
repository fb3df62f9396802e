"""The PostgreSQL pacing store: the same GCRA rule, on the database's clock or on one the test
gives. Runs when ``PCXBATCH_TEST_DATABASE`` names a PostgreSQL server (``.ci/run`` starts a
throwaway one); skips, saying so, otherwise."""

from __future__ import annotations

import os
import secrets
import threading
from collections import Counter

import pytest

URL = os.environ.get("PCXBATCH_TEST_DATABASE")
pytestmark = pytest.mark.skipif(
    not URL, reason="no PostgreSQL: set PCXBATCH_TEST_DATABASE (.ci/run starts one)"
)


def key() -> str:
    return f"pcx_test{secrets.token_hex(4)}"  # each test its own key: the table is shared


def test_burst_at_once_then_one_per_interval_on_a_given_clock() -> None:
    from pcxbatch.sharedpace_pg import PgSlotStore

    now = [1000.0]
    store = PgSlotStore(str(URL), clock=lambda: now[0])
    k = key()
    assert [round(store.reserve(k, 10, 3), 6) for _ in range(6)] == [0, 0, 0, 0.1, 0.2, 0.3]
    now[0] += 10
    assert [round(store.reserve(k, 10, 3), 6) for _ in range(4)] == [0, 0, 0, 0.1]
    store.hold(k, 2.0, 10, 3)
    assert round(store.reserve(k, 10, 3), 6) == 2.0
    store.close()


def test_the_databases_clock_paces_when_none_is_given() -> None:
    from pcxbatch.sharedpace_pg import PgSlotStore

    store = PgSlotStore(str(URL))
    k = key()
    waits = [store.reserve(k, 2, 1) for _ in range(3)]
    assert waits[0] == 0 and 0.4 < waits[1] <= 0.5 and 0.9 < waits[2] <= 1.0
    store.close()


def test_sharers_on_their_own_connections_stay_within_the_limit() -> None:
    from pcxbatch.sharedpace_pg import PgSlotStore

    k, start = key(), 5000.0
    slots: list[float] = []
    lock = threading.Lock()

    def sharer() -> None:
        store = PgSlotStore(str(URL), clock=lambda: start)
        got = [start + store.reserve(k, 200, 5) for _ in range(200)]
        store.close()
        with lock:
            slots.extend(got)

    threads = [threading.Thread(target=sharer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(slots) == 800
    per_second = Counter(int(s - start) for s in slots)
    assert max(per_second.values()) <= 200 + 5
    assert abs(max(slots) - min(slots) - (800 - 5) / 200) < 1e-6


def test_runs_starting_at_once_on_a_new_database_all_get_the_table(pg_database: str) -> None:
    # CREATE TABLE IF NOT EXISTS is not safe against itself in PostgreSQL: two sharers making
    # the table at the same instant could fail with a duplicate type, and a run with them.
    from pcxbatch.sharedpace_pg import PgSlotStore

    barrier = threading.Barrier(8)
    failures: list[Exception] = []

    def open_one() -> None:
        barrier.wait()
        try:
            PgSlotStore(pg_database).close()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
