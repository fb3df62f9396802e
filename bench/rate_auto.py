"""``--rate auto`` against limits it is not told (issue 16, item 2): how soon, how many 429s.

Usage (from the repository root; about three minutes)::

    .venv/bin/python bench/rate_auto.py                   # limits 20 and 200 requests/s
    .venv/bin/python bench/rate_auto.py --limits 20,200,1000 --seconds 40

For each limit L it starts the sandbox as its own process (``bench/sandbox_logged.py``:
``--rate L``, its burst the default one second's worth, no latency, 429 without
``Retry-After`` as API Gateway answers) and runs the real CLI, ``pcxbatch run FILE.csv
--rate auto --concurrency 32 ...``, with enough rows for about ``--seconds`` at L. From the
sandbox's own request log (arrival time and status of every request) and the run's
``run_started`` event it prints:

- **reached**: seconds from ``run_started`` to the end of the first one-second window in which
  the sandbox accepted at least 0.95 x L requests (target: at most 10 s);
- **kept**: requests accepted per second from 10 s to the last request, as a share of L (so
  the pace is held, not only touched once);
- **429 share**: 429 answers / requests the sandbox received, over the whole run (target: at
  most 2 %).

Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from throughput import Bench, RunFigures

REACH_WITHIN = 10.0
MOST_429 = 0.02


def reached(run: RunFigures, limit: float) -> float | None:
    """Seconds from run_started to the first full second with >= 0.95 x limit accepted."""
    accepted = [t for t, s in zip(run.server.times, run.server.statuses, strict=True) if s != 429]
    lo = 0
    for hi, t in enumerate(accepted):
        while accepted[lo] <= t - 1.0:
            lo += 1
        if t - run.started >= 1.0 and hi - lo + 1 >= 0.95 * limit:
            return t - run.started
    return None


def kept(run: RunFigures, limit: float) -> float:
    """Accepted requests/s from 10 s after run_started to the last arrival, as a share of L."""
    times, statuses = run.server.times, run.server.statuses
    start, end = run.started + REACH_WITHIN, times[-1]
    count = sum(1 for t, s in zip(times, statuses, strict=True) if s != 429 and t >= start)
    return count / (end - start) / limit if end > start else float("nan")


def one_limit(bench: Bench, limit: float, seconds: float, concurrency: int) -> bool:
    """Run ``--rate auto`` against a sandbox limited to ``limit``/s; print; True if on target."""
    rows = int(limit * seconds)
    run = bench.run(rows, rate="auto", concurrency=concurrency, server={"rate": limit})
    when = reached(run, limit)
    share = run.share_429
    ok = when is not None and when <= REACH_WITHIN and share <= MOST_429
    shown = "never" if when is None else f"{when:.1f} s"
    print(
        f"[{'PASS' if ok else 'FAIL'}] limit {limit:g}/s: reached 0.95 x L after {shown}"
        f" (target <= {REACH_WITHIN:g} s); 429 share {100 * share:.2f} %"
        f" ({run.server.throttled} of {run.server.requests}; target <= {100 * MOST_429:g} %);"
        f" kept {kept(run, limit):.3f} x L from 10 s on",
        flush=True,
    )
    print(f"       {run.describe()}", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    """Each limit in turn; exit 1 if one missed a target."""
    parser = argparse.ArgumentParser(prog="bench/rate_auto.py", description=__doc__.split("\n")[0])
    parser.add_argument("--limits", default="20,200", help="comma-separated requests/s")
    parser.add_argument("--seconds", type=float, default=45.0, help="run length at the limit")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    limits = [float(x) for x in args.limits.split(",")]
    load = os.getloadavg()
    print(
        f"rate auto: limits {args.limits}/s, about {args.seconds:g} s each, {args.concurrency} in"
        f" flight, {os.cpu_count()} CPUs, load average {load[0]:.2f}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="pcxbatch-auto-"))
    try:
        bench = Bench(work, largest=int(max(limits) * args.seconds * 1.5) + 100)
        results = [one_limit(bench, limit, args.seconds, args.concurrency) for limit in limits]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
