"""The audit log's cost to a run: the same run with the log on and off, side by side.

Usage (from the repository root; about a minute on the 2-core machine)::

    .venv/bin/python bench/audit.py              # 5,000 rows, 4 rounds
    .venv/bin/python bench/audit.py --rows 20000 --rounds 3

Each round runs ``pcxbatch.runner.run_job`` twice in this process, once with the report
folder's audit log (as every CLI run has it) and once without (``RunContext(audit_log=None)``,
which only a benchmark asks for), against the sandbox served on loopback with no rate limit
and no latency, in alternating order so the machine's load falls on both alike. It prints each
run's wall time, the medians, their ratio, and how many entries the log got per run: entries
are per event (start, finish, checkpoint), never per row, so the ratio should be 1 within the
machine's noise. Because that noise is large on a shared machine, it also prints the time spent
inside the audit log's own calls (hashing the journal and report files included) as a share of
each run: a figure the machine's load hardly moves.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pcxbatch.audit import AuditLog
from pcxbatch.config import load_job
from pcxbatch.context import RunContext
from pcxbatch.credentials import Credentials
from pcxbatch.runner import run_job
from pcxbatch.sandbox import SandboxConfig, start


class TimedLog(AuditLog):
    """The real audit log, counting the time its calls take (the log's own cost)."""

    spent = 0.0

    def record(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().record(*args, **kwargs)
        finally:
            TimedLog.spent += time.perf_counter() - started

    def check_key(self) -> None:
        started = time.perf_counter()
        try:
            super().check_key()
        finally:
            TimedLog.spent += time.perf_counter() - started


def timed_log(folder: Path, clock: Callable[[], datetime]) -> AuditLog:
    return TimedLog(folder, clock=clock)


class QuietUI:
    """Accepts the run and reports nothing."""

    def planned(self, plan: Any) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


inside: dict[bool, list[float]] = {}


def one_run(work: Path, rows: Path, url: str, key: str, *, audit: bool, n: int) -> float:
    report_dir = work / f"reports-{n}"
    job = load_job(
        rows,
        {
            "action": "deactivate",
            "updated_by": "bench",
            "reason": "audit benchmark",
            "base_url": url,
            "report_dir": report_dir,
            "rate": 10_000.0,
            "concurrency": 8,
            "yes": True,
        },
    )
    ctx = RunContext(
        ui=QuietUI(), credentials=Credentials(api_key=key), audit_log=timed_log if audit else None
    )
    TimedLog.spent = 0.0
    started = time.perf_counter()
    result = run_job(job, ctx)
    took = time.perf_counter() - started
    inside[audit].append(TimedLog.spent)
    assert result.exit_code == 0, result
    log = report_dir / "audit.jsonl"
    entries = len(log.read_text().splitlines()) if log.exists() else 0
    spent = f", {TimedLog.spent * 1000:.0f} ms of it in the audit log" if audit else ""
    state = "on " if audit else "off"
    print(f"  run {n:2d} audit {state}: {took:6.2f} s, {entries} entries{spent}")
    return took


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(prog="bench/audit.py", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    times: dict[bool, list[float]] = {True: [], False: []}
    inside.update({True: [], False: []})
    with tempfile.TemporaryDirectory(prefix="pcxbatch-audit-bench-") as tmp:
        work = Path(tmp)
        n = 0
        for round_ in range(args.rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for audit in order:
                n += 1
                server = start(SandboxConfig(users=args.rows, seed=n))
                try:
                    rows = work / f"rows-{n}.csv"
                    with rows.open("w", newline="") as f:
                        out = csv.writer(f)
                        out.writerow(["user_id"])
                        for user in server.sandbox.users:
                            out.writerow([user])
                    url = server.base_url
                    times[audit].append(one_run(work, rows, url, server.api_key, audit=audit, n=n))
                finally:
                    server.stop()
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"rows per run: {args.rows}; rounds: {args.rounds}")
    print(f"median with the audit log: {on:.2f} s; without: {off:.2f} s")
    print(f"ratio on/off: {on / off:.3f}")
    share = statistics.median(s / t for s, t in zip(inside[True], times[True], strict=True))
    print(f"time inside the audit log's calls, median share of a run: {share:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
