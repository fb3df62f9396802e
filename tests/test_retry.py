"""The retry module's run-level pieces on a virtual clock: the dead-API watch, the brake, and
the loop's refusal to wait longer than the job allows. Nothing here sleeps for real."""

from __future__ import annotations

import asyncio

import pytest
from vclock import run_virtual

from pcxbatch.retry import (
    ApiWatch,
    Attempt,
    AttemptListener,
    Brake,
    Halted,
    Retrier,
    RetryPolicy,
    Tally,
    WaitTooLong,
    shows_life,
)


class Client:
    """A Watched client: remembers its listener and whether it was halted."""

    base_url = "https://prod-api.pcxpay.com/v1"

    def __init__(self) -> None:
        self.listener: AttemptListener | None = None
        self.halted_at: float | None = None

    def listen(self, listener: AttemptListener) -> None:
        self.listener = listener

    def halt(self) -> None:
        self.halted_at = asyncio.get_running_loop().time()


def watched(
    script: list[tuple[float, bool]], *, give_up_after: float = 60.0, until: float = 600.0
) -> tuple[ApiWatch, Client, float | None]:
    """Run an ApiWatch over attempts ``(at, alive)`` on the virtual clock; return the watch,
    the client and when the run's stop was set (None: never, before ``until``)."""
    notices: list[str] = []

    async def main() -> tuple[ApiWatch, Client, float | None]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        watch = ApiWatch(stop, give_up_after, notices.append)
        client = Client()
        watching = asyncio.create_task(watch.watch(client))

        async def stopped() -> float:
            await stop.wait()
            return loop.time()

        stopping = asyncio.create_task(stopped())
        await asyncio.sleep(0)
        for at, alive in script:
            await asyncio.sleep(at - loop.time())
            if not stop.is_set():
                assert client.listener is not None
                client.listener.attempted(alive, "" if alive else "could not connect to the API")
        done, _ = await asyncio.wait({stopping}, timeout=max(until - loop.time(), 0))
        watching.cancel()
        return watch, client, stopping.result() if done else None

    return run_virtual(main())


def test_a_dead_api_stops_the_run_a_minute_after_the_first_failure_even_with_no_more_attempts() -> (
    None
):
    # Refused connections at once, then every worker sits in a long backoff: the timer decides.
    watch, client, stopped_at = watched([(1.0, False), (1.5, False), (3.0, False)])
    assert stopped_at == pytest.approx(61.0)
    assert client.halted_at == pytest.approx(61.0)  # no new attempt after the stop
    assert watch.reason is not None
    assert "the API at prod-api.pcxpay.com has not answered for 60 s" in watch.reason
    assert "3 attempts; the last: could not connect to the API" in watch.reason
    assert "run the same command again" in watch.reason


def test_timeouts_stop_the_run_a_minute_after_the_first_deadline_passed() -> None:
    # Requests hanging to their 60 s deadline: the first failure is at 60 s, the stop at 120 s.
    script = [(60.0, False), (60.0, False), (120.5, False)]
    _, _, stopped_at = watched(script)
    assert stopped_at == pytest.approx(120.0)


def test_any_sign_of_life_ends_a_failing_spell() -> None:
    script = [(0.0, False), (30.0, False), (50.0, True), (70.0, False), (100.0, False)]
    _, _, stopped_at = watched(script, until=400.0)
    assert stopped_at == pytest.approx(130.0)  # 60 s after the failure at 70 s, not at 60 s


def test_throttling_and_a_lone_failure_never_stop_a_run() -> None:
    # A slowly paced run: one failure, then 429s (throttled, alive) for ten minutes.
    script = [(0.0, False), *((float(t), True) for t in range(100, 700, 100))]
    watch, client, stopped_at = watched(script, until=800.0)
    assert stopped_at is None and watch.reason is None and client.halted_at is None


def test_throttled_answers_show_life_and_gateway_failures_do_not() -> None:
    assert shows_life(429, None) and shows_life(503, 30.0) and shows_life(404, None)
    assert not shows_life(None, None) and not shows_life(502, None) and not shows_life(503, None)


def test_long_waits_are_noticed_once_each_and_short_ones_not_at_all() -> None:
    notices: list[str] = []

    async def main() -> None:
        watch = ApiWatch(asyncio.Event(), 60.0, notices.append)
        watch.pausing(2.0, "429 with Retry-After: 2")
        for _ in range(8):  # eight workers meet the same pause
            watch.pausing(120.0, "429 with Retry-After: 120")
        await asyncio.sleep(200)
        watch.pausing(120.0, "429 with Retry-After: 120")

    run_virtual(main())
    assert len(notices) == 2
    assert notices[0].startswith("the API answered 429 with Retry-After: 120: waiting 120 s")


def test_the_brake_cuts_waits_short_and_refuses_new_ones() -> None:
    async def main() -> tuple[float, bool]:
        loop = asyncio.get_running_loop()
        brake = Brake()
        asyncio.get_running_loop().call_later(5.0, brake.apply)
        with pytest.raises(Halted) as cut:
            await brake.wait(lambda: asyncio.sleep(300), ambiguous=True)
        assert cut.value.ambiguous and not cut.value.stops_run
        with pytest.raises(Halted):
            await brake.wait(lambda: asyncio.sleep(0), ambiguous=False)
        return loop.time(), brake.applied

    assert run_virtual(main()) == (5.0, True)


def test_a_retry_after_longer_than_allowed_stops_even_on_the_last_attempt() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def throttled() -> Attempt:
        tally.attempts += 1
        return Attempt(429, "Too Many Requests", None, None, 86400.0, True, None, "86400")

    tally = Tally()
    retrier = Retrier(RetryPolicy(max_attempts=1, max_wait=600), sleep)
    with pytest.raises(WaitTooLong, match=r"wait 24 h \(Retry-After: 86400; until about"):
        asyncio.run(retrier.run(throttled, tally, attempts=1, name="PUT /v1/users/u1/deactivate"))
    assert waits == [] and tally.attempts == 1
