"""Runs sharing one API key share its limit (issue 16 item 3): several ``pcxbatch run``
processes at once against a sandbox that allows R requests/s per key, side by side with the
same runs each pacing alone.

Usage (from the repository root; about a minute and a half)::

    .venv/bin/python bench/shared_rate.py                 # 3 runs, R = 200
    .venv/bin/python bench/shared_rate.py --runs 4 --rate 200 --rows 1500

Each run deactivates its own users (so the sandbox's request log tells them apart), with
``--rate R`` as a team would set it for the key. Shared: the runs' default, one pacing file for
the key (here a temporary one, through ``PCXBATCH_PACING_STORE``). Alone: the same runs with
``PCXBATCH_PACING_STORE=off``. Printed for each: the requests per second together while all
runs send (target: at least 0.95 x R), the busiest second of requests the sandbox accepted
(at most R plus its burst), the share of 429 answers, and each run's share of the accepted
requests (within 20 % of R / n).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from throughput import Sandbox  # the sandbox in its own process, logging what it saw

from pcxbatch.sandbox.config import generate_api_key
from pcxbatch.sandbox.users import seed_users

PCXBATCH = Path(sys.executable).with_name("pcxbatch")


def one_round(work: Path, runs: int, rate: float, rows: int, *, shared: bool) -> list[str]:
    """Start the runs at once against the sandbox in its own process; the lines to print."""
    key = generate_api_key()
    users = [u["user_id"] for u in seed_users(runs * rows * 2, 0) if u["status"] == "active"]
    server = Sandbox(work, users=runs * rows * 2, key=key, rate=rate)
    try:
        env = {**os.environ, "PCX_API_KEY": key}
        env["PCXBATCH_PACING_STORE"] = str(work / "pace.sqlite") if shared else "off"
        owner: dict[str, int] = {}
        procs = []
        for n in range(runs):
            mine = users[n * rows : (n + 1) * rows]
            owner.update(dict.fromkeys(mine, n))
            path = work / f"{'shared' if shared else 'alone'}-{n}.csv"
            with path.open("w", newline="") as f:
                csv.writer(f).writerows([["user_id"], *([u] for u in mine)])
            args = [str(PCXBATCH), "run", str(path), "--yes", "--action", "deactivate"]
            args += ["--updated-by", "bench", "--reason", "shared rate benchmark"]
            args += ["--rate", f"{rate:g}", "--concurrency", "8", "--base-url", server.base_url]
            args += ["--report-dir", str(work / f"reports-{n}-{shared}")]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            procs.append(subprocess.Popen(args, env=env, **quiet))  # type: ignore[call-overload]
        for p in procs:
            p.wait(timeout=600)
    finally:
        log = server.stop()
    puts = [
        Request(t, s, u)
        for t, s, u in zip(log.times, log.statuses, log.user_ids, strict=True)
        if u in owner
    ]
    return summarise(puts, owner, runs, rate, shared)


@dataclass
class Request:
    """One request the sandbox logged."""

    time: float
    status: int | None
    user_id: str


def summarise(
    puts: list[Request], owner: dict[str, int], runs: int, rate: float, shared: bool
) -> list[str]:
    firsts = [min(r.time for r in puts if owner[r.user_id] == n) for n in range(runs)]
    lasts = [max(r.time for r in puts if owner[r.user_id] == n) for n in range(runs)]
    start, end = max(firsts), min(lasts)  # while every run sends
    during = [r for r in puts if start <= r.time <= end]
    accepted = [r for r in during if r.status != 429]
    together = len(during) / (end - start)
    busiest = max(Counter(int(r.time) for r in puts if r.status != 429).values())
    throttled = sum(r.status == 429 for r in puts) / len(puts)
    shares = Counter(owner[r.user_id] for r in accepted)
    fair = [shares[n] / len(accepted) * runs for n in range(runs)]
    name = "shared (the default)" if shared else "each alone (PCXBATCH_PACING_STORE=off)"
    return [
        f"{name}:",
        f"  requests/s together while all send: {together:.1f} ({together / rate:.3f} x R)",
        f"  accepted/s while all send: {len(accepted) / (end - start):.1f}",
        f"  busiest second accepted: {busiest}",
        f"  429 share: {throttled:.2%}",
        "  each run's share of R/n: " + ", ".join(f"{f:.2f}" for f in fair),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both rounds and print them side by side."""
    parser = argparse.ArgumentParser(
        prog="bench/shared_rate.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--rows", type=int, default=1500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pcxbatch-shared-") as tmp:
        print(
            f"{args.runs} runs of {args.rows} rows, one key, the sandbox allowing {args.rate:g}/s"
        )
        for shared in (True, False):
            print("\n".join(one_round(Path(tmp), args.runs, args.rate, args.rows, shared=shared)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
