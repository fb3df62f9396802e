"""What the client costs beside a bare aiohttp loop (issue 16, item 1): CPU per row, one run.

Usage (from the repository root; about two minutes on the 2-core machine)::

    .venv/bin/pip install -e '.[bench]'        # aiohttp for the floor, requests for item 4
    .venv/bin/python bench/client_cost.py               # 20,000 rows, 2 rounds, 32 in flight
    .venv/bin/python bench/client_cost.py --rows 5000 --rounds 1

What it does: every sender deactivates the same 20,000 active users (``seed_users``) over
loopback against a fresh sandbox (``bench/sandbox_logged.py``, its own process: no throttle, no
latency), with 32 requests in flight, and the CPU of the sender's own process (user + system,
``os.wait4``, start-up included) is divided by the rows. The senders, alternating in each round
(the order rotated, so the machine's drift hits all of them alike):

- ``aiohttp``: a bare aiohttp loop (``bench/senders.py``), the floor;
- ``pcxclient``: the same requests through ``pcxbatch.client.PcxClient`` (``bench/senders.py``):
  limiter, retries, deadline, capped body read, answer parsing;
- ``pcxclient-httpx``: the same client over httpx's transports, as it sent before (the
  earlier figure, re-measured in the same run);
- ``pcxbatch run``: the whole command (``--rate 10000 --concurrency 32``): reading and checking
  the file, the journal, the progress, the report files, start-up.

It prints each figure and the ratio to the aiohttp loop of the same round, then the verdict on
the medians over the rounds: the client at most 2x the loop. Exit 1 when it misses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from statistics import median

from throughput import PYTHON, Bench, run_measured

HERE = Path(__file__).resolve().parent
TARGET = 2.0  # the client's CPU per row, at most this many times the bare loop's


def run_sender(bench: Bench, sender: str, rows: int, concurrency: int) -> float:
    """CPU ms per row of one ``bench/senders.py`` process against a fresh sandbox."""
    ids = bench.work / f"ids-{rows}.txt"
    if not ids.exists():
        with bench.csv(rows).open(encoding="utf-8") as f:
            next(f)
            ids.write_text("\n".join(line.split(",")[0] for line in f))
    sandbox = bench.sandbox(bench.population.users_for(rows))
    try:
        cmd = [PYTHON, str(HERE / "senders.py"), "--sender", sender, "--ids", str(ids)]
        cmd += ["--base-url", sandbox.base_url, "--concurrency", str(concurrency)]
        env = {**os.environ, "PCX_API_KEY": bench.key}
        ran = run_measured(cmd, cwd=bench.work, env=env)
    finally:
        try:
            log = sandbox.stop()
        finally:
            sandbox.kill()
    if ran.code != 0:
        raise RuntimeError(f"{sender} exited {ran.code}:\n{ran.stderr[-2000:]}")
    done = json.loads(ran.stdout.strip().splitlines()[-1])
    if done["sent"] != rows or log.requests != rows:
        raise RuntimeError(f"{sender}: sent {done}, sandbox saw {log.requests}")
    ms = 1000 * ran.cpu / rows
    print(
        f"  {sender:<13} {ms:.3f} ms CPU/row  ({ran.cpu:.2f} s CPU, {ran.wall:.2f} s wall,"
        f" {rows / ran.wall:,.0f} rows/s whole process; answers {done['statuses']})",
        flush=True,
    )
    return ms


def run_command(bench: Bench, rows: int, concurrency: int) -> float:
    """CPU ms per row of the whole ``pcxbatch run`` command."""
    run = bench.run(rows, rate=10_000, concurrency=concurrency, server={})
    if run.applied != rows:
        raise RuntimeError(f"pcxbatch run applied {run.applied} of {rows}")
    ms = 1000 * run.ran.cpu / rows
    print(
        f"  {'pcxbatch run':<13} {ms:.3f} ms CPU/row  ({run.ran.cpu:.2f} s CPU,"
        f" {run.ran.wall:.2f} s wall; sending {run.rate:,.0f} rows/s)",
        flush=True,
    )
    return ms


def main(argv: list[str] | None = None) -> int:
    """Alternate the senders for ``--rounds`` rounds; print figures and ratios."""
    parser = argparse.ArgumentParser(
        prog="bench/client_cost.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-command", action="store_true", help="skip the whole pcxbatch run")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(
        f"client cost: {args.rows:,} rows, {args.concurrency} in flight, {os.cpu_count()} CPUs,"
        f" load average {load[0]:.2f}, Python {sys.version.split()[0]}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="pcxbatch-cost-"))
    bench = Bench(work)
    names = ["aiohttp", "pcxclient", "pcxclient-httpx"]
    names += [] if args.no_command else ["pcxbatch run"]
    figures: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        print(f"round {r + 1}:", flush=True)
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if name == "pcxbatch run":
                figures[name].append(run_command(bench, args.rows, args.concurrency))
            else:
                figures[name].append(run_sender(bench, name, args.rows, args.concurrency))
        floor = figures["aiohttp"][-1]
        for name in names[1:]:
            ratio = figures[name][-1] / floor
            print(f"  {name} / aiohttp: {ratio:.2f}x", flush=True)
    # The verdict is on the medians: on a shared machine one round's floor can be off by 30 %.
    floor = median(figures["aiohttp"])
    ratio = median(figures["pcxclient"]) / floor
    missed = ratio > TARGET
    verdict = "FAIL" if missed else "PASS"
    print(f"[{verdict}] pcxclient / aiohttp, medians: {ratio:.2f}x (target <= {TARGET:g}x)")
    if args.rounds > 1:
        print("medians: " + ", ".join(f"{n} {median(v):.3f} ms" for n, v in figures.items()))
        print(
            "median ratios: "
            + ", ".join(
                f"{n} {median(v) / floor:.2f}x" for n, v in figures.items() if n != "aiohttp"
            )
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
