"""Run the same sandbox test in-process (httpx ASGITransport) and through real loopback sockets.

The ``api`` fixture is parametrized over both ways in: ``api(config)`` builds a sandbox, serves it
(for ``loopback``, with uvicorn on 127.0.0.1, stopped after the test) and returns a ``Harness``
whose ``call`` sends one request and returns the ``httpx.Response`` (or raises httpx's error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sandbox_harness import FakeClock, FakeSleep, Harness

from pcxbatch.sandbox import INPROCESS_BASE_URL, RunningSandbox, Sandbox, SandboxConfig, start


@pytest.fixture(scope="session")
def _stopping() -> Iterator[list[RunningSandbox]]:
    """Loopback sandboxes told to stop, joined once at the end (shutting down takes ~0.2 s)."""
    stopping: list[RunningSandbox] = []
    yield stopping
    for running in stopping:
        running.join()


@pytest.fixture(params=["inprocess", "loopback"])
def api(
    request: pytest.FixtureRequest, _stopping: list[RunningSandbox]
) -> Iterator[Callable[..., Harness]]:
    """``api(config=None)``: a ``Harness`` for a fresh sandbox (default: 40 seeded users)."""
    started: list[RunningSandbox] = []

    def make(config: SandboxConfig | None = None) -> Harness:
        clock, sleep = FakeClock(), FakeSleep()
        sandbox = Sandbox(config or SandboxConfig(users=40), clock=clock, sleep=sleep)
        if request.param == "inprocess":
            return Harness("inprocess", sandbox, INPROCESS_BASE_URL, clock, sleep)
        running = start(sandbox=sandbox)
        started.append(running)
        return Harness("loopback", sandbox, running.base_url, clock, sleep, running)

    yield make
    for running in started:
        running.stop(wait=False)
        _stopping.append(running)
