"""Shared pacing: GCRA slots across processes, on a clock the tests choose (nothing sleeps)."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import pytest

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


def test_two_runs_on_one_key_share_its_rate_fairly_and_a_429_slows_both(tmp_path: Path) -> None:
    import asyncio

    from vclock import run_virtual

    from pcxbatch.limiter import Limiter
    from pcxbatch.sharedpace import SharedPacer

    async def main() -> tuple[dict[str, list[float]], float]:
        loop = asyncio.get_running_loop()
        store = SlotStore(tmp_path / "p.sqlite", clock=loop.time)
        # Each run alone would send 100/s; the key allows 20/s, so together they keep to 20.
        runs = {n: SharedPacer(Limiter(100, 1), store, "pcx_k", rate=20) for n in ("a", "b")}
        sent: dict[str, list[float]] = {"a": [], "b": []}

        async def worker(name: str) -> None:
            while loop.time() < 10:
                await runs[name].acquire()
                sent[name].append(loop.time())

        await asyncio.gather(*(worker(n) for n in runs for _ in range(4)))
        runs["a"].on_throttled(3.0)  # a Retry-After seen by one run...
        await runs["b"].acquire()  # ...holds the other back too
        return sent, loop.time()

    sent, after_hold = run_virtual(main())
    every = sorted(t for times in sent.values() for t in times)
    per_second = Counter(int(t) for t in every if t < 10)
    assert max(per_second.values()) <= 20 + 1
    assert sum(per_second.values()) >= 0.95 * 20 * 10
    share = len(sent["a"]) / len(every)
    assert 0.4 <= share <= 0.6  # each within 20 % of half
    assert after_hold >= every[-1] + 3.0 - 1e-6


def test_shared_pacing_is_left_out_when_off_or_for_a_jwt_and_a_bad_store_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcxbatch.errors import UnusableError
    from pcxbatch.limiter import Limiter
    from pcxbatch.sharedpace import SharedPacer, shared_pacer

    local = Limiter(10, 1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert shared_pacer(local, "off", "api_key:pcx_a_", 10, 1) is local
    assert shared_pacer(local, None, None, 10, 1) is local  # a JWT has no non-secret name
    default = shared_pacer(local, None, "api_key:pcx_a_", 10, 1)
    assert isinstance(default, SharedPacer)
    assert (tmp_path / "cache" / "pcxbatch" / "pacing.sqlite").exists()
    monkeypatch.setenv("PCXBATCH_PACING_STORE", "off")
    assert shared_pacer(local, None, "api_key:pcx_a_", 10, 1) is local
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnusableError, match="pacing_store"):
        shared_pacer(local, str(tmp_path / "file" / "p.sqlite"), "api_key:pcx_a_", 10, 1)


def test_the_key_is_named_by_its_non_secret_prefix_only() -> None:
    from pcxbatch.credentials import Credentials

    assert Credentials(api_key="pcx_ab12_s3cr3tvalue").pacing_key() == "api_key:pcx_ab12_"
    assert Credentials(jwt="eyJa.eyJb.sig").pacing_key() is None


def _told_too_high(tmp_path: Path, *, shared: bool) -> tuple[float, int]:
    """One run told 200/s against a gateway allowing 50/s (burst 10), 16 senders, 50 ms round
    trips, 40 virtual seconds: the rows/s it got through, and how many 429s it drew."""
    import asyncio

    from test_limiter import GatewayBucket
    from vclock import run_virtual

    from pcxbatch.limiter import Limiter
    from pcxbatch.sharedpace import SharedPacer

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        local = Limiter(200)
        pacer = (
            SharedPacer(local, SlotStore(tmp_path / "p.sqlite", clock=loop.time), "pcx_k", 200)
            if shared
            else local
        )
        gateway = GatewayBucket(50, 10)
        done, throttled = 0, 0

        async def sender() -> None:
            nonlocal done, throttled
            while loop.time() < 40:
                await pacer.acquire()
                await asyncio.sleep(0.025)
                admitted = gateway.admit(loop.time())
                await asyncio.sleep(0.025)
                if admitted:
                    done += 1
                    pacer.on_success()
                else:
                    throttled += 1
                    pacer.on_throttled()

        await asyncio.gather(*(sender() for _ in range(16)))
        return done / loop.time(), throttled

    return run_virtual(main())


def test_a_run_told_too_high_a_rate_finds_the_limit_as_well_shared_as_alone(
    tmp_path: Path,
) -> None:
    # The key's hold after a 429 must not end in a burst at the stated rate: the slots a run
    # takes from the store are spaced at the pace its own limiter keeps now.
    alone_rate, alone_429 = _told_too_high(tmp_path, shared=False)
    shared_rate, shared_429 = _told_too_high(tmp_path, shared=True)
    assert alone_rate >= 0.9 * 50
    assert shared_rate >= 0.95 * alone_rate
    assert shared_429 <= 1.5 * alone_429 + 5


def test_a_429_without_retry_after_seen_by_one_run_slows_the_other(tmp_path: Path) -> None:
    import asyncio

    from vclock import run_virtual

    from pcxbatch.limiter import Limiter
    from pcxbatch.sharedpace import SharedPacer

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        store = SlotStore(tmp_path / "p.sqlite", clock=loop.time)
        a, b = (SharedPacer(Limiter(20), store, "pcx_k", rate=20) for _ in range(2))
        b_sent: list[float] = []

        async def worker(pacer: SharedPacer, until: float) -> None:
            while loop.time() < until:
                await pacer.acquire()
                if pacer is b:
                    b_sent.append(loop.time())

        await asyncio.gather(*(worker(p, 10) for p in (a, b) for _ in range(2)))
        for _ in range(3):  # three 429s in a row, no Retry-After: run a cuts its pace
            a.on_throttled()
        await asyncio.gather(*(worker(p, 20) for p in (a, b) for _ in range(2)))
        before = sum(1 for t in b_sent if 5 <= t < 10)
        return before, sum(1 for t in b_sent if 15 <= t < 20)

    before, after = run_virtual(main())
    assert before >= 45  # half of the key's 20/s
    assert after <= 0.75 * before  # the key's next slots came later for b too
