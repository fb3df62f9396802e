"""Runs sharing one API key share its limit (issue 16 item 3): several ``pcxbatch run``
processes at once against a sandbox that allows R requests/s per key, side by side with the
same runs each pacing alone, and, when given a PostgreSQL server, the same runs split between
two "hosts" sharing the key's pacing through it.

Usage (from the repository root; about a minute and a half for the default)::

    .venv/bin/python bench/shared_rate.py                 # 3 runs, R = 200
    .venv/bin/python bench/shared_rate.py --runs 4 --rate 200 --rows 1500
    .venv/bin/python bench/shared_rate.py --runs 2,3,4 \\
        --store postgresql://pcxtest@127.0.0.1:54341/postgres --skew 3   # about five minutes

Each run deactivates its own users (so the sandbox's request log tells them apart), with
``--rate R`` as a team would set it for the key, and has its own ``HOME`` and
``XDG_CACHE_HOME`` (so no pacing file is shared unless one is named). Rounds, for each number
of runs:

- *PostgreSQL, two hosts* (with ``--store URL``): ``PCXBATCH_PACING_STORE=URL``; the runs split
  between host A and host B (the first half, rounded up, on A). With ``--skew S`` host B's
  processes run under ``faketime -f +Ss``: their wall clock is S seconds ahead, as a host whose
  clock is off would be; pacing is decided on the database's clock, so that must not matter.
- *SQLite, one host* (always): one pacing file named for the key's runs (a temporary one).
- *each alone* (always): ``PCXBATCH_PACING_STORE=off``.
- *control* (with ``--skew S --skew-control``): the SQLite round again with host B's half of the
  runs S seconds ahead: what the same skew does to pacing decided on the hosts' own clocks.

Printed for each round: the requests per second together while all runs send (target: at least
0.95 x R), the busiest second of requests the sandbox accepted (at most R plus the runs' burst,
1), the least burst a gateway metering R/s would need to accept every request as it arrived
(which tells apart what a second-aligned count cannot: a few ms of jitter in when paced
requests arrive, or a real bunching), the share of 429 answers, and each run's share of the
accepted requests (within 20 % of R / n), side by side in one table per number of runs.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from throughput import Sandbox  # the sandbox in its own process, logging what it saw

from pcxbatch.sandbox.config import generate_api_key
from pcxbatch.sandbox.users import seed_users

PCXBATCH = Path(sys.executable).with_name("pcxbatch")
BURST = 1  # the runs' own burst (pcxbatch's default): a second may hold at most R + BURST


@dataclass(frozen=True)
class Mode:
    """One way of running the key's runs: where they share pacing, on how many hosts."""

    name: str
    store: str  # PCXBATCH_PACING_STORE: "off", a URL, or "" for a temporary SQLite file
    hosts: int = 1  # 2: the runs split between host A and host B
    skew: float = 0.0  # seconds host B's wall clock is ahead (faketime); 0: no faketime
    judged: bool = True  # held to the targets (each alone is the contrast, not judged)


@dataclass
class Request:
    """One request the sandbox logged."""

    time: float
    status: int | None
    user_id: str


@dataclass
class Figures:
    """One round's figures, from the sandbox's own log."""

    together: float  # requests/s while every run sends
    accepted: float  # accepted requests/s over the same time
    busiest: int  # the most requests accepted in one second (of the epoch)
    throttled: float  # 429 answers / requests
    fair: list[float]  # each run's accepted requests / (all accepted / n)
    overlap: float  # seconds during which every run was sending
    span: float  # seconds from the first run's first request to the last one's last
    overall: float  # requests/s over that span
    burst_needed: int  # the least burst a gateway at R would need to accept every request


def host_of(n: int, runs: int, mode: Mode) -> str:
    """Which host run ``n`` of ``runs`` is on in ``mode``: "A", or "B" (the second half)."""
    return "B" if mode.hosts == 2 and n >= math.ceil(runs / 2) else "A"


def faketime_problem(skew: float) -> str | None:
    """None when ``faketime -f +{skew}s`` shifts a child Python's ``time.time()`` by ``skew`` s
    and asyncio still sleeps the time it is asked to; else what is wrong, in a sentence."""
    exe = shutil.which("faketime")
    if exe is None:
        return "faketime is not installed (Debian: apt-get install faketime)"
    code = (
        "import asyncio, time\n"
        "wall, mono = time.time(), time.monotonic()\n"
        "asyncio.run(asyncio.sleep(0.3))\n"
        "print(wall, time.monotonic() - mono)\n"
    )
    before = time.time()
    done = subprocess.run(
        [exe, "-f", f"{skew:+g}s", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    after = time.time()
    try:
        wall, slept = (float(x) for x in done.stdout.split())
    except ValueError:
        return f"faketime's child printed {done.stdout!r}, {done.stderr.strip()!r}"
    if not before + skew - 0.5 <= wall <= after + skew + 0.5:
        return f"the child's clock was off by {wall - (before + after) / 2:+.2f} s, not {skew:+g}"
    if not 0.25 <= slept <= 2.0:
        return f"asyncio.sleep(0.3) took {slept:.2f} s under faketime"
    return None


def one_round(work: Path, runs: int, rate: float, rows: int, mode: Mode) -> Figures:
    """Start the runs at once against the sandbox in its own process; the round's figures."""
    key = generate_api_key()
    users = [u["user_id"] for u in seed_users(runs * rows * 2, 0) if u["status"] == "active"]
    server = Sandbox(work, users=runs * rows * 2, key=key, rate=rate)
    tag = f"{runs}-{time.monotonic_ns()}"
    store = mode.store or str(work / f"pace-{tag}.sqlite")
    owner: dict[str, int] = {}
    procs = []
    try:
        for n in range(runs):
            mine = users[n * rows : (n + 1) * rows]
            owner.update(dict.fromkeys(mine, n))
            path = work / f"{tag}-{n}.csv"
            with path.open("w", newline="") as f:
                csv.writer(f).writerows([["user_id"], *([u] for u in mine)])
            home = work / f"home-{tag}-{n}"  # its own: no pacing file shared by accident
            env = {**os.environ, "PCX_API_KEY": key, "PCXBATCH_PACING_STORE": store}
            env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
            env |= {"XDG_DATA_HOME": str(home / ".local/share")}
            env |= {"XDG_CONFIG_HOME": str(home / ".config")}
            env |= {"XDG_STATE_HOME": str(home / ".local/state")}
            args = [str(PCXBATCH), "run", str(path), "--yes", "--action", "deactivate"]
            args += ["--updated-by", "bench", "--reason", "shared rate benchmark"]
            args += ["--rate", f"{rate:g}", "--concurrency", "8", "--base-url", server.base_url]
            args += ["--report-dir", str(work / f"reports-{tag}-{n}")]
            if mode.skew and host_of(n, runs, mode) == "B":
                args = ["faketime", "-f", f"{mode.skew:+g}s", *args]
            err = (work / f"{tag}-{n}.stderr").open("w")
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err))
            err.close()
        for n, p in enumerate(procs):
            if p.wait(timeout=600) != 0:
                tail = (work / f"{tag}-{n}.stderr").read_text()[-2000:]
                raise RuntimeError(f"{mode.name}: run {n} exited {p.returncode}:\n{tail}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        log = server.stop()
    puts = [
        Request(t, s, u)
        for t, s, u in zip(log.times, log.statuses, log.user_ids, strict=True)
        if u in owner
    ]
    return summarise(puts, owner, runs, rate)


def burst_needed(times: list[float], rate: float) -> int:
    """The least burst with which a GCRA bucket at ``rate``/s accepts every arrival in
    ``times`` (epoch s): 1 for requests never closer than 1 / rate, more the more they bunch.
    Requests paced at exactly ``rate`` whose arrivals jitter by j seconds need about 1 + j x
    rate; a second-aligned count of them can show R + 2 though their pacing allowed R + 1."""
    interval, tat, most = 1.0 / rate, -math.inf, 0.0
    for t in sorted(times):
        tat = max(tat, t)
        most = max(most, (tat - t) / interval)  # how far ahead of its arrival the bucket is
        tat += interval
    return 1 + math.ceil(most - 1e-9)


def summarise(puts: list[Request], owner: dict[str, int], runs: int, rate: float) -> Figures:
    """The round's figures from the requests the sandbox logged and which run sent each."""
    firsts = [min(r.time for r in puts if owner[r.user_id] == n) for n in range(runs)]
    lasts = [max(r.time for r in puts if owner[r.user_id] == n) for n in range(runs)]
    start, end = max(firsts), min(lasts)  # while every run sends
    during = [r for r in puts if start <= r.time <= end]
    accepted = [r for r in during if r.status != 429]
    shares = Counter(owner[r.user_id] for r in accepted)
    nan = float("nan")  # no time when every run sent at once: one kept the others waiting
    return Figures(
        together=len(during) / (end - start) if accepted else nan,
        accepted=len(accepted) / (end - start) if accepted else nan,
        busiest=max(Counter(int(r.time) for r in puts if r.status != 429).values()),
        throttled=sum(r.status == 429 for r in puts) / len(puts),
        fair=[shares[n] / len(accepted) * runs if accepted else nan for n in range(runs)],
        overlap=max(0.0, end - start),
        span=max(lasts) - min(firsts),
        overall=len(puts) / (max(lasts) - min(firsts)),
        burst_needed=burst_needed([r.time for r in puts], rate),
    )


def verdict(f: Figures, rate: float) -> str:
    """PASS, or FAIL and the targets missed (issue 16 item 3; "no 429 storm": at most 1 %)."""
    missed = []
    if not f.together >= 0.95 * rate:  # NaN (never all at once) misses too
        missed.append("< 0.95 R")
    if f.busiest > rate + BURST:
        missed.append(f"a second of R + {f.busiest - rate:g} > R + burst {BURST}")
    if not all(abs(x - 1) <= 0.2 for x in f.fair):
        missed.append("a share off by > 20 %")
    if f.throttled > 0.01:
        missed.append("> 1 % 429")
    return "FAIL: " + ", ".join(missed) if missed else "PASS"


def _num(x: float, then: str = "", spec: str = ".1f") -> str:
    """``x`` as ``spec`` followed by ``then``; a dash for NaN (the runs never sent at once)."""
    return "-" if math.isnan(x) else f"{x:{spec}}{then}"


def table(runs: int, rate: float, rounds: list[tuple[Mode, Figures]]) -> list[str]:
    """The rounds of one number of runs side by side, as a Markdown table."""
    modes = [m for m, _ in rounds]
    rows = [
        ["requests/s together"]
        + [_num(f.together, f" ({f.together / rate:.3f} x R)") for _, f in rounds],
        ["accepted/s together"] + [_num(f.accepted) for _, f in rounds],
        ["s all sent at once / first to last"]
        + [f"{f.overlap:.1f} / {f.span:.1f}" for _, f in rounds],
        ["requests/s first to last"] + [_num(f.overall) for _, f in rounds],
        ["busiest second accepted"] + [str(f.busiest) for _, f in rounds],
        ["burst a gateway at R needs"] + [str(f.burst_needed) for _, f in rounds],
        ["429 share"] + [f"{f.throttled:.2%}" for _, f in rounds],
        ["each run's share of R / n"]
        + [
            ", ".join(
                _num(x, host_of(n, runs, m) if m.hosts == 2 else "", ".2f")
                for n, x in enumerate(f.fair)
            )
            for m, f in rounds
        ],
        ["targets"] + [verdict(f, rate) if m.judged else "(contrast)" for m, f in rounds],
    ]
    head = [f"{runs} runs"] + [m.name for m in modes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def modes_for(store: str | None, skew: float, control: bool) -> list[Mode]:
    """The rounds to run for each number of runs, in order."""
    modes = []
    if store:
        name = "PostgreSQL, two hosts" + (f", B's clock {skew:+g} s" if skew else "")
        modes.append(Mode(name, store, hosts=2, skew=skew))
    modes.append(Mode("SQLite file, one host (the default)", ""))
    modes.append(Mode("each alone (off)", "off", judged=False))
    if control and skew:
        name = f"control: SQLite file, half the runs' clock {skew:+g} s"
        modes.append(Mode(name, "", hosts=2, skew=skew, judged=False))
    return modes


def main(argv: list[str] | None = None) -> int:
    """Run every round for every number of runs; print one side-by-side table per number."""
    parser = argparse.ArgumentParser(
        prog="bench/shared_rate.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", default="3", help="runs at once, e.g. 3 or 2,3,4")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--rows", type=int, default=1500, help="rows per run")
    parser.add_argument("--store", help="a postgresql:// URL: also share through it, two hosts")
    parser.add_argument("--skew", type=float, default=0.0, help="host B's clock ahead by (s)")
    parser.add_argument("--skew-control", action="store_true", help="the SQLite round skewed")
    args = parser.parse_args(argv)
    if args.store and not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store takes a postgresql:// URL (the SQLite round always runs)")
    skew = args.skew
    if skew:
        problem = faketime_problem(skew)
        if problem:
            print(f"no clock skew: {problem}")
            skew = 0.0
        else:
            print(f"faketime checked: a child's time.time() is {skew:+g} s, asyncio sleeps right")
    modes = modes_for(args.store, skew, args.skew_control)
    load = os.getloadavg()[0]
    print(
        f"runs of {args.rows} rows, one key, the sandbox allowing {args.rate:g}/s (burst"
        f" {args.rate:g}), each run --rate {args.rate:g} --concurrency 8; load average {load:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="pcxbatch-shared-") as tmp:
        for runs in (int(r) for r in args.runs.split(",")):
            done = []
            for mode in modes:
                done.append((mode, one_round(Path(tmp), runs, args.rate, args.rows, mode)))
                print(f"  ({runs} runs, {mode.name}: done)", flush=True)
            print("\n".join(table(runs, args.rate, done)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
