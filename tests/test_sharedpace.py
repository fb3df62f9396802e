"""Shared pacing: GCRA slots across processes, on a clock the tests choose (nothing sleeps)."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

from pcxbatch.sharedpace import SlotStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_at_once_then_one_per_interval(tmp_path: Path) -> None:
    clock = Clock()
    store = SlotStore(tmp_path / "p.sqlite", clock=clock)
    waits = [store.reserve("pcx_k1", rate=10, burst=3) for _ in range(6)]
    assert [round(w, 6) for w in waits] == [0, 0, 0, 0.1, 0.2, 0.3]
    clock.now += 10  # idle time saves up no more than the burst
    waits = [store.reserve("pcx_k1", rate=10, burst=3) for _ in range(4)]
    assert [round(w, 6) for w in waits] == [0, 0, 0, 0.1]


def test_keys_are_paced_apart(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "p.sqlite", clock=Clock())
    assert store.reserve("pcx_a", rate=1) == 0 and store.reserve("pcx_b", rate=1) == 0
    assert store.reserve("pcx_a", rate=1) == 1.0


def test_a_429_seen_by_one_holds_every_sharer_back(tmp_path: Path) -> None:
    clock = Clock()
    one = SlotStore(tmp_path / "p.sqlite", clock=clock)
    other = SlotStore(tmp_path / "p.sqlite", clock=clock)
    one.reserve("pcx_k", rate=100, burst=4)
    one.hold("pcx_k", 2.0, rate=100, burst=4)
    assert round(other.reserve("pcx_k", rate=100, burst=4), 6) == 2.0


def _reserve(path: str, n: int, start: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    # Every process reads the same frozen instant: the slots it gets are what is checked.
    store = SlotStore(Path(path), clock=lambda: start)
    out.put([start + store.reserve("pcx_shared", rate=200, burst=5) for _ in range(n)])


def test_processes_sharing_a_key_stay_within_its_limit_and_share_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    path = str(tmp_path / "p.sqlite")
    procs = [context.Process(target=_reserve, args=(path, 300, 1000.0, out)) for _ in range(3)]
    for p in procs:
        p.start()
    slots = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    every = sorted(s for each in slots for s in each)
    assert len(every) == 900 and len(set(every)) == 900 - 4  # the burst's 5 share one instant
    per_second = Counter(int(s - 1000.0) for s in every)
    assert max(per_second.values()) <= 200 + 5  # no second with more than the limit + burst
    span = every[-1] - every[0]
    assert abs(span - (900 - 5) / 200) < 1e-6  # together they use the whole limit
