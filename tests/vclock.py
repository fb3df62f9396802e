"""A virtual-time asyncio event loop, so tests of waiting code never wait.

In: a coroutine. Out: its result, computed on an event loop whose clock is virtual.

API (small on purpose)::

    from vclock import run_virtual   # tests/ is on sys.path under pytest (no __init__.py)

    result = run_virtual(main())            # like asyncio.run(main())
    # inside main(): asyncio.get_running_loop().time() is the virtual time (starts at 0.0),
    # asyncio.sleep(3600) returns at once with the clock 3600 s later.

How time moves: whenever nothing is ready to run and the next step is a timer (``sleep``,
``call_later``, ``wait_for`` timeouts), the clock jumps straight to that timer. Code that is
running never moves the clock, so virtual durations are exact and repeatable.

Intended for in-process work: plain coroutines, ``httpx.MockTransport`` and
``httpx.ASGITransport``. Two kinds of real work are waited for before time jumps:

- executor jobs (``run_in_executor``/``asyncio.to_thread``, DNS lookups): while one is
  pending, the loop waits for it in real time and moves the virtual clock by the real time
  spent, so a timeout never fires early against a thread that is still working;
- real sockets: when sockets other than the loop's own are registered, the loop first waits up
  to ``io_grace`` real seconds for them before jumping. A peer that answers within the grace
  period is served as on a normal loop; a slower one sees virtual timeouts fire early. Real
  sockets therefore work, but time measured around them is not meaningful.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")

#: Default real seconds to wait for registered sockets before letting virtual time jump.
DEFAULT_IO_GRACE = 0.05


class _VirtualSelector(selectors.BaseSelector):
    """Wraps a real selector; ``select`` never blocks on timers, it moves the clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop
        self._own_fds: set[Any] = set()

    def mark_own(self) -> None:
        """Remember the loop's own wake-up pipe, which is always registered."""
        self._own_fds = set(self._real.get_map().keys())

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        loop = self._loop
        if loop.pending_executor_jobs:
            # Real work in a thread: wait for it really, and let virtual time follow real time.
            started = time.monotonic()
            events = self._real.select(timeout)
            spent = time.monotonic() - started
            loop.advance(spent if events or timeout is None else max(spent, timeout))
            return events
        if loop.io_grace > 0 and set(self._real.get_map().keys()) - self._own_fds:
            wait = loop.io_grace if timeout is None else min(loop.io_grace, timeout)
            events = self._real.select(wait)
            if events:
                return events
        if timeout is None:
            # No timers at all: only another thread or a socket can wake us, so block for real.
            return self._real.select(None)
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual and jumps to the next timer when idle.

    ``start`` is the clock's initial value; ``io_grace`` see the module docstring.
    """

    def __init__(self, start: float = 0.0, io_grace: float = DEFAULT_IO_GRACE) -> None:
        self._virtual_now = float(start)
        self.io_grace = io_grace
        self.pending_executor_jobs = 0
        selector = _VirtualSelector(self)
        super().__init__(selector)
        selector.mark_own()

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (never backward)."""
        if seconds > 0:
            self._virtual_now += seconds

    def run_in_executor(  # type: ignore[override]
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[..., T],
        *args: Any,
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.pending_executor_jobs += 1

        def done(_: asyncio.Future[T]) -> None:
            self.pending_executor_jobs -= 1

        future.add_done_callback(done)
        return future


def run_virtual(
    coro: Coroutine[Any, Any, T], *, start: float = 0.0, io_grace: float = DEFAULT_IO_GRACE
) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop`, like ``asyncio.run``."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start, io_grace)) as runner:
        return runner.run(coro)
