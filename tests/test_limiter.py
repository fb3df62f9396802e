"""Pacing as a run sees it: even spacing, fairness, pauses, and learning the server's real limit.

Everything runs on the virtual clock (tests/vclock.py): virtual seconds pass, real ones do not.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

import pytest
from vclock import VirtualTimeLoop, run_virtual

from pcxbatch.limiter import Limiter


def now() -> float:
    return asyncio.get_running_loop().time()


async def send_times(limiter: Limiter, count: int) -> list[float]:
    """Start ``count`` senders at once; return when each got its slot, in slot order."""
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(now())

    await asyncio.gather(*(one() for _ in range(count)))
    return times


def test_no_start_up_burst_requests_are_evenly_spaced_from_the_first() -> None:
    times = run_virtual(send_times(Limiter(10), 5))
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_burst_lets_at_most_burst_requests_out_at_once() -> None:
    times = run_virtual(send_times(Limiter(10, burst=3), 6))
    assert times == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_idle_time_saves_up_to_burst_slots_and_no_more() -> None:
    async def scenario() -> list[float]:
        limiter = Limiter(10, burst=2)
        await send_times(limiter, 2)
        await asyncio.sleep(60)  # a long pause must not turn into a 600-request burst
        start = now()
        return [t - start for t in await send_times(limiter, 4)]

    assert run_virtual(scenario()) == pytest.approx([0.0, 0.0, 0.1, 0.2])


def test_a_briefly_stalled_event_loop_does_not_slow_the_schedule() -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        # Just before the second slot (10 ms), the loop is busy elsewhere for 15 ms.
        loop.call_at(0.0099, loop.advance, 0.015)
        return await send_times(Limiter(100), 5)

    # The waiters keep their due times as far as possible (20 ms at once, then 30 and 40 ms),
    # instead of every later slot shifting by the 15 ms stall.
    assert run_virtual(scenario()) == pytest.approx([0.0, 0.0249, 0.0249, 0.03, 0.04])


def test_waiters_are_served_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        limiter = Limiter(5)
        order: list[int] = []

        async def one(n: int) -> None:
            await limiter.acquire()
            order.append(n)

        tasks = []
        for n in range(8):
            tasks.append(asyncio.create_task(one(n)))
            await asyncio.sleep(0.01)  # arrive one after another
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(scenario()) == list(range(8))


def test_a_cancelled_waiter_does_not_hold_up_the_others() -> None:
    async def scenario() -> list[float]:
        limiter = Limiter(1)
        await limiter.acquire()
        stuck = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.5)
        stuck.cancel()
        return await send_times(limiter, 2)

    assert run_virtual(scenario()) == pytest.approx([1.0, 2.0])


def test_retry_after_pauses_every_sender_then_pacing_resumes() -> None:
    async def scenario() -> list[float]:
        limiter = Limiter(10, adaptive=False)
        await limiter.acquire()
        limiter.on_throttled(retry_after=5.0)
        assert limiter.rate == 10  # not adaptive: only the pause
        return await send_times(limiter, 3)

    assert run_virtual(scenario()) == pytest.approx([5.0, 5.1, 5.2])


def test_unlimited_rate_never_waits() -> None:
    assert run_virtual(send_times(Limiter(math.inf), 100)) == [0.0] * 100


def test_a_throttle_cuts_the_rate_once_for_all_requests_in_flight() -> None:
    async def scenario() -> tuple[float, float]:
        limiter = Limiter(100)

        async def sent_then_throttled() -> None:
            await limiter.acquire()
            await asyncio.sleep(0.2)  # answers arrive after the first 429 was handled
            limiter.on_throttled()

        in_flight = [asyncio.create_task(sent_then_throttled()) for _ in range(20)]
        await asyncio.gather(*in_flight)
        after_burst_of_429s = limiter.rate
        await limiter.acquire()  # a request sent after the cut...
        limiter.on_throttled()  # ...throttled again: now it counts
        return after_burst_of_429s, limiter.rate

    first, second = run_virtual(scenario())
    assert 50 <= first < 100  # one cut, not twenty
    assert second < first


def test_rate_recovers_after_throttling_but_never_above_the_configured_rate() -> None:
    async def scenario() -> tuple[float, float]:
        limiter = Limiter(20)
        await limiter.acquire()
        limiter.on_throttled()
        cut = limiter.rate
        top = 0.0
        for _ in range(2000):
            await limiter.acquire()
            limiter.on_success()
            top = max(top, limiter.rate)
        return cut, top

    cut, top = run_virtual(scenario())
    assert cut < 20
    assert top == 20


def test_rate_is_never_cut_to_nothing() -> None:
    async def scenario() -> float:
        limiter = Limiter(50)
        for _ in range(200):
            await limiter.acquire()
            limiter.on_throttled()
        return limiter.rate

    assert run_virtual(scenario()) == pytest.approx(50 / 1000)


# --- the adaptive targets, against a simulated API Gateway ------------------------------------


class GatewayBucket:
    """API Gateway's throttle: a token bucket of ``burst`` tokens refilled at ``rate``/s,
    full at the start. A request that finds no token is answered 429."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), 0.0

    def admit(self, at: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (at - self.stamp) * self.rate)
        self.stamp = at
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class RunStats:
    achieved: float  # successful requests per second over the whole run
    throttled_share: float  # 429 answers / all answers
    fastest_second: int  # most requests sent in any one-second window
    final_rate: float


async def simulate(
    told: float,
    true_rate: float,
    burst: int,
    *,
    requests: int = 5000,
    workers: int = 32,
    latency: float = 0.05,
    jitter: float = 0.0,
) -> RunStats:
    """``workers`` concurrent senders share one limiter; each request: acquire, travel half the
    latency, meet the gateway, travel back; a 429 is retried at once (the worst case)."""
    limiter = Limiter(told)
    gateway = GatewayBucket(true_rate, burst)
    noise = random.Random(7)
    todo = requests
    throttled = 0
    finished = 0.0
    sent_at: list[float] = []

    async def worker() -> None:
        nonlocal todo, throttled, finished
        while todo > 0:
            todo -= 1
            while True:
                await limiter.acquire()
                sent_at.append(now())
                await asyncio.sleep(latency / 2 + noise.uniform(0, jitter))
                admitted = gateway.admit(now())
                await asyncio.sleep(latency / 2 + noise.uniform(0, jitter))
                if admitted:
                    limiter.on_success()
                    break
                throttled += 1
                limiter.on_throttled()
            finished = max(finished, now())

    await asyncio.gather(*(worker() for _ in range(workers)))
    fastest, lo = 0, 0
    for hi, t in enumerate(sent_at):
        while sent_at[lo] <= t - 1.0:
            lo += 1
        fastest = max(fastest, hi - lo + 1)
    return RunStats(
        achieved=requests / finished,
        throttled_share=throttled / (requests + throttled),
        fastest_second=fastest,
        final_rate=limiter.rate,
    )


def test_told_four_times_the_real_limit_it_converges_just_under_it() -> None:
    started = time.perf_counter()
    stats = run_virtual(simulate(told=200, true_rate=50, burst=10))
    assert stats.achieved >= 0.90 * 50
    assert stats.throttled_share <= 0.05
    assert 40 <= stats.final_rate <= 60  # it learnt the limit; it is not still at 200
    assert time.perf_counter() - started < 10  # sanity: virtual time, no real waiting


def test_told_the_true_limit_it_keeps_it_with_almost_no_429() -> None:
    stats = run_virtual(simulate(told=100, true_rate=100, burst=10))
    assert stats.achieved >= 0.97 * 100
    assert stats.throttled_share <= 0.01
    assert stats.fastest_second <= 100 + 1  # never faster than configured (+1: window edges)


def test_targets_hold_with_uneven_network_latency() -> None:
    over = run_virtual(simulate(told=200, true_rate=50, burst=10, jitter=0.03))
    assert over.achieved >= 0.90 * 50
    assert over.throttled_share <= 0.05
    exact = run_virtual(simulate(told=100, true_rate=100, burst=10, jitter=0.03))
    assert exact.achieved >= 0.97 * 100
    assert exact.throttled_share <= 0.01


def test_told_less_than_the_limit_it_sends_at_the_told_rate() -> None:
    stats = run_virtual(simulate(told=40, true_rate=100, burst=10, requests=2000))
    assert stats.throttled_share == 0
    assert stats.achieved == pytest.approx(40, rel=0.01)
    assert stats.fastest_second <= 40 + 1


# --- --rate auto: finding a limit nobody stated ---------------------------------------------


@dataclass
class Found:
    reached: float | None  # end of the first second in which the gateway let >= 0.95 x limit pass
    throttled_share: float  # 429 answers / requests sent
    kept: float  # requests let through per second from 10 s to the end, as a share of the limit
    fastest_second: int  # most requests sent in any one-second window
    final_rate: float


async def find_limit(
    limiter: Limiter,
    limit: float,
    burst: int,
    *,
    seconds: float = 60.0,
    workers: int = 32,
    latency: float = 0.002,
    retry_after: float | None = None,
) -> Found:
    """``workers`` senders through ``limiter`` for ``seconds`` against a gateway bucket of
    ``limit``/s and ``burst`` (full at the start); a 429 (with ``retry_after``, if given) is
    retried at once, as the client does after the limiter's pause."""
    gateway = GatewayBucket(limit, burst)
    passed: list[float] = []
    sent: list[float] = []
    throttled = 0

    async def worker() -> None:
        nonlocal throttled
        while now() < seconds:
            await limiter.acquire()
            sent.append(now())
            await asyncio.sleep(latency / 2)
            admitted = gateway.admit(now())
            await asyncio.sleep(latency / 2)
            if admitted:
                passed.append(now())
                limiter.on_success()
            else:
                throttled += 1
                limiter.on_throttled(retry_after)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return Found(
        reached=_first_second_at(passed, 0.95 * limit),
        throttled_share=throttled / len(sent),
        kept=sum(1 for t in passed if t >= 10.0) / (seconds - 10.0) / limit,
        fastest_second=_busiest_second(sent),
        final_rate=limiter.rate,
    )


def _first_second_at(times: list[float], count: float) -> float | None:
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        if t >= 1.0 and hi - lo + 1 >= count:
            return t
    return None


def _busiest_second(times: list[float]) -> int:
    fastest, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        fastest = max(fastest, hi - lo + 1)
    return fastest


@pytest.mark.parametrize("limit", [20, 200, 1000])
@pytest.mark.parametrize("burst", ["10", "one second's worth"])
def test_rate_auto_reaches_the_unknown_limit_within_10_s_with_few_429(
    limit: int, burst: str
) -> None:
    bucket = 10 if burst == "10" else limit
    found = run_virtual(find_limit(Limiter.finding(10_000), limit, bucket))
    assert found.reached is not None and found.reached <= 10.0
    assert found.throttled_share <= 0.02
    assert found.kept >= 0.95  # and it stays there
    assert 0.85 * limit <= found.final_rate <= 1.15 * limit


def test_rate_auto_starts_slow_and_never_passes_max_rate() -> None:
    limiter = Limiter.finding(100)
    assert limiter.rate == 10  # the first second is the default stated rate, not a burst
    found = run_virtual(find_limit(limiter, 500, 500, seconds=30))
    assert found.throttled_share == 0
    assert found.fastest_second <= 100 + 1  # +1: window edges
    assert found.kept == pytest.approx(100 / 500, rel=0.02)


def test_rate_auto_does_not_grow_a_pace_the_run_cannot_use() -> None:
    # 8 senders, 100 ms each: at most 80 requests/s whatever the pace; the API would take 5,000.
    found = run_virtual(find_limit(Limiter.finding(10_000), 5000, 5000, workers=8, latency=0.1))
    assert found.fastest_second <= 81
    assert found.final_rate <= 2.5 * found.fastest_second  # not a pace never tried


def test_rate_auto_honours_retry_after_and_still_converges() -> None:
    found = run_virtual(find_limit(Limiter.finding(10_000), 200, 200, retry_after=1.0))
    assert found.reached is not None and found.reached <= 10.0
    assert found.throttled_share <= 0.02
    assert found.kept >= 0.90  # each 429 costs a whole second's pause here


def test_a_stated_rate_is_still_the_default_and_starts_at_once() -> None:
    assert Limiter(200).rate == 200  # no slow start unless asked for (--rate auto)


# --- the virtual clock itself ------------------------------------------------------------------


def test_virtual_clock_jumps_over_sleeps_and_timeouts() -> None:
    async def scenario() -> tuple[float, float]:
        await asyncio.sleep(3600)
        hour = now()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(100), timeout=5)
        return hour, now()

    started = time.perf_counter()
    assert run_virtual(scenario()) == (3600.0, 3605.0)
    assert time.perf_counter() - started < 5


def test_virtual_clock_waits_for_work_in_threads() -> None:
    def slow_work() -> str:
        time.sleep(0.05)
        return "done"

    async def scenario() -> str:
        # The thread takes real time; the virtual 5 s timeout must not fire before it is done.
        return await asyncio.wait_for(asyncio.to_thread(slow_work), 5)

    assert run_virtual(scenario()) == "done"
