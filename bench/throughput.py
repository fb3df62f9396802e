"""Throughput at the API's limit (issue 5): one command, every figure beside its target.

Usage (from the repository root; about 6.5 minutes on the 2-core machine)::

    .venv/bin/python bench/throughput.py             # everything
    .venv/bin/python bench/throughput.py --only 1,5  # some of the items
    .venv/bin/python bench/throughput.py --json out.json --keep /tmp/bench-work
    PYTHONPATH=/copy/with/a/change .venv/bin/python bench/throughput.py --only 5  # measure a
                                                     # changed pcxbatch before applying it

What it does: for each item it starts the PCX sandbox as its own process
(``bench/sandbox_logged.py``: ``pcxbatch.sandbox`` served by uvicorn exactly as ``pcxbatch
sandbox`` serves it, which also writes the arrival time and status of every request
when it stops), generates the input CSV from ``seed_users(n, 0)`` (active users, to
deactivate), runs the real CLI (``pcxbatch run FILE.csv --base-url ... --yes --rate ...
--concurrency ... --log-format json``, key in ``PCX_API_KEY``) and reads three sources:

- the run's JSON log: ``run_started`` (sending begins) and ``run_finished`` (report written),
  millisecond timestamps. **End-to-end rate = rows / (run_finished - run_started)**: from the
  moment the run may send its first request to the moment its report is on disk, so the
  slow start, the last answers, every retry and the report are inside it; Python start-up,
  reading and checking the file are not (they do not depend on the API). The whole command's
  rate (rows / wall time of the process) is printed beside it.
- the sandbox's own log: requests received, how many answered 429, and the rate at which
  accepted requests arrived. **429 share = 429 answers / requests the sandbox received.**
- ``summary.json``: counts per outcome, retries, throttled answers (cross-checks the above).

Peak memory is the child's ``ru_maxrss`` from ``os.wait4``. Nothing here is needed by the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pstats
import queue
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
_SCRIPT = Path(PYTHON).with_name("pcxbatch")
#: The real command line: the console script beside this interpreter (else ``-m pcxbatch``).
PCXBATCH = [str(_SCRIPT)] if _SCRIPT.exists() else [PYTHON, "-m", "pcxbatch"]
TIME_LIMIT = 600.0  # item 7: the whole benchmark


# --- running things ---------------------------------------------------------------------------


@dataclass
class Ran:
    """A finished child process: exit code, wall time (s), CPU (s), peak RSS (MB), output."""

    code: int
    wall: float
    cpu: float
    peak_mb: float
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> Ran:
    """Run ``cmd`` in ``cwd`` to completion; its peak RSS comes from ``wait4`` (this child's own).

    ``cwd`` is the work folder, never the repository: ``python -m`` puts its working folder
    first on ``sys.path``, and a ``PYTHONPATH`` given to the benchmark must win.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Ran(
            code=proc.returncode,
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            peak_mb=usage.ru_maxrss / 1024,  # Linux: kilobytes
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


@dataclass
class ServerLog:
    """What the sandbox saw: arrival times (epoch s) and statuses, in arrival order."""

    times: list[float]
    statuses: list[int | None]
    user_ids: list[str | None] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.times)

    @property
    def throttled(self) -> int:
        return sum(1 for s in self.statuses if s == 429)

    def accepted_rate(self) -> float:
        """Accepted (non-429) requests per second between the first and the last arrival."""
        times = [t for t, s in zip(self.times, self.statuses, strict=True) if s != 429]
        if len(times) < 2:
            return float("nan")
        return (len(times) - 1) / (times[-1] - times[0])


class Sandbox:
    """``bench/sandbox_logged.py`` as a child process on a free loopback port."""

    def __init__(
        self,
        work: Path,
        *,
        users: int,
        key: str,
        rate: float | None = None,
        burst: int | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        self._log = Path(tempfile.mkstemp(prefix="sandbox-", suffix=".json", dir=work)[1])
        cmd = [PYTHON, str(HERE / "sandbox_logged.py"), "--users", str(users), "--api-key", key]
        cmd += ["--log-out", str(self._log), "--latency-ms", str(latency_ms)]
        if rate is not None:
            cmd += ["--rate", str(rate)]
        if burst is not None:
            cmd += ["--burst", str(burst)]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.base_url = self._wait_listening(timeout=60)

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self._proc.kill()
                raise RuntimeError("the sandbox did not start:\n" + "".join(self._output))
            self._output.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                return found.group(1) + "/v1"

    def stop(self) -> ServerLog:
        """Ctrl-C the sandbox (it shuts down cleanly, then writes its log) and read the log."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            raise
        data = json.loads(self._log.read_text())
        self._log.unlink()
        return ServerLog(data["time"], data["status"], data.get("user_id", []))

    def kill(self) -> None:
        """Make sure the child is gone (after an error)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


# --- inputs -----------------------------------------------------------------------------------


class Population:
    """The sandbox's seeded users (seed 0), and input files made of its active ones."""

    def __init__(self, largest: int) -> None:
        from pcxbatch.sandbox.users import seed_users

        self._users = seed_users(largest, 0)
        self._active = [i for i, u in enumerate(self._users) if u["status"] == "active"]

    def users_for(self, rows: int) -> int:
        """How many users the sandbox must seed so that ``rows`` of them are active."""
        return self._active[rows - 1] + 1

    def write_csv(self, path: Path, rows: int) -> Path:
        """``rows`` active users, one deactivation each (the job gives updated_by and reason)."""
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["user_id", "email"])
            for i in self._active[:rows]:
                writer.writerow([self._users[i]["user_id"], self._users[i]["email"]])
        return path


# --- a pcxbatch run ---------------------------------------------------------------------------


@dataclass
class RunFigures:
    """One ``pcxbatch run`` against one sandbox."""

    rows: int
    ran: Ran
    summary: dict[str, Any]
    server: ServerLog
    send_seconds: float  # run_started -> run_finished
    started: float = 0.0  # run_started, epoch seconds

    @property
    def rate(self) -> float:
        """End-to-end rows/s (see the module docstring)."""
        return self.rows / self.send_seconds

    @property
    def whole_rate(self) -> float:
        return self.rows / self.ran.wall

    @property
    def share_429(self) -> float:
        return self.server.throttled / max(1, self.server.requests)

    @property
    def applied(self) -> int:
        return int(self.summary["counts"]["applied"])

    def describe(self) -> str:
        s = self.summary
        attempts = s["rows"] + s["retries"]
        return (
            f"{self.rows} rows in {self.send_seconds:.2f} s sending ({self.rate:.1f} rows/s); "
            f"whole command {self.ran.wall:.2f} s ({self.whole_rate:.1f} rows/s); "
            f"sandbox saw {self.server.requests} requests, {self.server.throttled} x 429, "
            f"accepted at {self.server.accepted_rate():.1f}/s; summary: {self.applied} applied, "
            f"{s['retries']} retries, {s['throttled']} throttled of {attempts} attempts; "
            f"client CPU {self.ran.cpu:.1f} s, peak RSS {self.ran.peak_mb:.0f} MB"
        )


def _event_times(stderr: str) -> dict[str, float]:
    times: dict[str, float] = {}
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            times.setdefault(event["event"], datetime.fromisoformat(event["ts"]).timestamp())
    return times


class Bench:
    """Shared state: the work folder, the API key, the seeded population, the checks so far."""

    def __init__(self, work: Path, largest: int = 32_000) -> None:
        self.work = work
        self.key = f"pcx_bench_{secrets.token_hex(16)}"
        self.population = Population(largest)
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self._n = 0

    def sandbox(self, users: int, **behaviour: Any) -> Sandbox:
        return Sandbox(self.work, users=users, key=self.key, **behaviour)

    def csv(self, rows: int) -> Path:
        path = self.work / f"deactivate-{rows}.csv"
        if not path.exists():
            self.population.write_csv(path, rows)
        return path

    def run(
        self,
        rows: int,
        *,
        rate: float | str,
        concurrency: int,
        server: dict[str, Any],
        profile: Path | None = None,
    ) -> RunFigures:
        """Start a sandbox with ``server`` behaviour; send ``rows`` deactivations with the CLI."""
        self._n += 1
        report_dir = self.work / f"reports-{self._n}"
        args = ["run", str(self.csv(rows)), "--yes", "--action", "deactivate"]
        args += ["--updated-by", "bench", "--reason", "throughput benchmark"]
        args += ["--rate", rate if isinstance(rate, str) else f"{rate:g}"]
        args += ["--concurrency", str(concurrency)]
        args += ["--report-dir", str(report_dir), "--log-format", "json"]
        env = {**os.environ, "PCX_API_KEY": self.key}
        env.pop("PCX_JWT", None)
        env.pop("PCX_BASE_URL", None)
        cmd = PCXBATCH
        if profile is not None:
            cmd = [PYTHON, "-m", "cProfile", "-o", str(profile), "-m", "pcxbatch"]
        sandbox = self.sandbox(self.population.users_for(rows), **server)
        try:
            ran = run_measured(
                [*cmd, *args, "--base-url", sandbox.base_url], cwd=self.work, env=env
            )
        finally:
            try:
                log = sandbox.stop()
            finally:
                sandbox.kill()
        if ran.code != 0:
            raise RuntimeError(f"pcxbatch run exited {ran.code}:\n{ran.stdout}\n{ran.stderr}")
        summary_path = next(report_dir.glob("*/summary.json"))
        summary = json.loads(summary_path.read_text())
        events = _event_times(ran.stderr)
        seconds = events["run_finished"] - events["run_started"]
        return RunFigures(rows, ran, summary, log, seconds, events["run_started"])


@dataclass
class Check:
    """One figure beside its target."""

    item: str
    what: str
    value: float
    target: float
    unit: str
    higher_is_better: bool = True
    detail: str = ""
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        self.passed = bool(ok)

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"[{verdict}] {self.item} {self.what}: {_fmt(self.value, self.unit)}"
            f"  (target {sign} {_fmt(self.target, self.unit)})"
        )


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{100 * value:.2f} %"
    if unit == "x":
        return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"
    return f"{value:,.1f} {unit}".strip()


def check(bench: Bench, *args: Any, **kwargs: Any) -> Check:
    """Record a check and print it at once."""
    result = Check(*args, **kwargs)
    bench.checks.append(result)
    print(result.line(), flush=True)
    if result.detail:
        print(f"       {result.detail}", flush=True)
    return result


# --- the items --------------------------------------------------------------------------------


def item1_at_the_limit(bench: Bench) -> None:
    """R = 100/s (burst 10), 50 ms latency; 5,000 rows told --rate 100."""
    r = 100.0
    run = bench.run(
        5000,
        rate=r,
        concurrency=16,
        server={"rate": r, "burst": 10, "latency_ms": 50},
    )
    check(bench, "1.", "at the limit, end-to-end rate", run.rate, 0.97 * r, "rows/s")
    check(
        bench,
        "1.",
        "at the limit, requests answered 429",
        run.share_429,
        0.01,
        "%",
        higher_is_better=False,
        detail=run.describe(),
    )


def item2_finding_the_limit(bench: Bench) -> None:
    """Told --rate 200, the sandbox allows 50/s (burst 10), 50 ms latency; 3,000 rows."""
    r = 50.0
    run = bench.run(
        3000,
        rate=200,
        concurrency=16,
        server={"rate": r, "burst": 10, "latency_ms": 50},
    )
    check(bench, "2.", "finding the limit, end-to-end rate", run.rate, 0.90 * r, "rows/s")
    check(
        bench,
        "2.",
        "finding the limit, requests answered 429",
        run.share_429,
        0.05,
        "%",
        higher_is_better=False,
        detail=run.describe(),
    )


def item3_latency(bench: Bench) -> None:
    """R = 50/s (burst 10), 300 ms latency; 2,000 rows told --rate 50, --concurrency 32."""
    r = 50.0
    run = bench.run(
        2000,
        rate=r,
        concurrency=32,
        server={"rate": r, "burst": 10, "latency_ms": 300},
    )
    check(
        bench,
        "3.",
        "300 ms latency, end-to-end rate",
        run.rate,
        0.97 * r,
        "rows/s",
        detail=run.describe(),
    )


def item4_against_a_loop(bench: Bench) -> None:
    """The same 2,000 rows, 50 ms latency, R = 200/s (burst 10): pcxbatch vs requests.put."""
    rows, r = 2000, 200.0
    server = {"rate": r, "burst": 10, "latency_ms": 50}
    run = bench.run(rows, rate=r, concurrency=32, server=server)
    ids = []
    with bench.csv(rows).open(encoding="utf-8") as f:
        ids = [row["user_id"] for row in csv.DictReader(f)]
    sandbox = bench.sandbox(bench.population.users_for(rows), **server)
    try:
        label, seconds, statuses = _sequential_loop(sandbox.base_url, bench.key, ids)
    finally:
        try:
            log = sandbox.stop()
        finally:
            sandbox.kill()
    loop_rate = rows / seconds
    ok = statuses.get(200, 0)
    check(
        bench,
        "4.",
        f"pcxbatch (whole command) vs a sequential {label} loop",
        run.whole_rate / loop_rate,
        1.0,
        "x",
        detail=(
            f"pcxbatch: {run.describe()}\n       loop: {rows} rows in {seconds:.2f} s"
            f" ({loop_rate:.1f} rows/s), answers {dict(statuses)}, {ok} applied;"
            f" sandbox saw {log.requests} requests, {log.throttled} x 429"
        ),
    )
    bench.notes.append(
        f"4. ratio on the sending phase alone: {run.rate / loop_rate:.1f}x"
        f" ({run.rate:.1f} vs {loop_rate:.1f} rows/s)"
    )


def _sequential_loop(
    base_url: str, key: str, ids: Sequence[str]
) -> tuple[str, float, Counter[int]]:
    """What a team would script: one ``requests.put`` after another, no session, no pacing."""
    headers = {"Authorization": "NONE", "X-Api-Key": key}
    body = {"updated_by": "bench", "reason": "throughput benchmark"}
    put: Callable[..., Any]
    try:
        import requests

        label, put = "requests.put", requests.put
    except ImportError:  # requests is a bench-only extra; say what ran instead
        import httpx

        label, put = "httpx.put (requests not installed)", httpx.put
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    for user_id in ids:
        response = put(f"{base_url}/users/{user_id}/deactivate", json=body, headers=headers)
        statuses[response.status_code] += 1
    return label, time.perf_counter() - started, statuses


def item5_overhead(bench: Bench) -> None:
    """No throttle, no latency: rows/s over loopback, a profile, and memory vs rows."""
    server: dict[str, Any] = {}
    big = bench.run(20_000, rate=10_000, concurrency=32, server=server)
    check(
        bench,
        "5.",
        "no throttle, end-to-end rate (20,000 rows)",
        big.rate,
        1000.0,
        "rows/s",
        detail=big.describe()
        + f"; client CPU per row {1000 * big.ran.cpu / big.rows:.2f} ms (whole command)",
    )
    small = bench.run(2000, rate=10_000, concurrency=32, server=server)
    growth = big.ran.peak_mb / small.ran.peak_mb
    check(
        bench,
        "6.",
        "run memory, peak RSS at 20,000 rows / at 2,000 rows",
        growth,
        1.10,
        "x",
        higher_is_better=False,
        detail=f"{small.ran.peak_mb:.0f} MB at 2,000 rows, {big.ran.peak_mb:.0f} MB at 20,000 rows"
        f" ({1024 * (big.ran.peak_mb - small.ran.peak_mb) / 18_000:.2f} KB per extra row)",
    )
    prof = bench.work / "run.prof"
    profiled = bench.run(5000, rate=10_000, concurrency=32, server=server, profile=prof)
    print(
        f"       profile (cProfile, 5,000 rows, {profiled.rate:.0f} rows/s under the profiler):",
        flush=True,
    )
    for line in profile_summary(prof):
        print(f"         {line}", flush=True)
        bench.notes.append(f"5. profile: {line}")


#: Where a function's own time goes: first matching path fragment wins.
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP: httpx", ("/httpx/",)),
    ("HTTP: httpcore", ("/httpcore/",)),
    ("HTTP: h11", ("/h11/",)),
    ("HTTP: aiohttp + yarl + multidict", ("/aiohttp/", "/yarl/", "/multidict/")),
    ("HTTP: anyio + sniffio", ("/anyio/", "/sniffio/")),
    ("retries: tenacity", ("/tenacity/",)),
    ("pcxbatch journal (SQLite)", ("pcxbatch/journal.py", "sqlite3.Connection")),
    ("pcxbatch client", ("pcxbatch/client.py",)),
    ("pcxbatch limiter", ("pcxbatch/limiter.py",)),
    ("pcxbatch execute", ("pcxbatch/execute.py",)),
    ("pcxbatch report", ("pcxbatch/report/",)),
    ("pcxbatch read/validate", ("pcxbatch/read/", "pcxbatch/validate.py", "/pandas/")),
    ("pcxbatch cli, runner", ("pcxbatch/cli.py", "pcxbatch/runner.py", "/rich/", "/click/")),
    ("sockets (send/recv)", ("_socket.socket", "selector_events.py", "selectors.py")),
    ("start-up (imports)", ("<frozen importlib", "marshal", "builtins.exec", "compile")),
)


def _group(func: tuple[str, int, str]) -> str | None:
    where = f"{func[0]}:{func[2]}"
    return next((name for name, parts in _GROUPS if any(p in where for p in parts)), None)


def profile_summary(path: Path, top: int = 12) -> list[str]:
    """cProfile's own time per group; time in the stdlib or builtins goes to its callers' groups.

    (``asyncio.current_task``, say, is called some 60 times a request by sniffio, anyio and
    httpcore: its time belongs to the HTTP stack, not to asyncio.) Up to four levels of callers
    are followed, split in proportion to the time each caller spent in the function.
    """
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    totals: Counter[str] = Counter()

    def attribute(func: Any, amount: float, depth: int, first: bool) -> None:
        group = _group(func)
        if group is not None:
            totals[group] += amount
            return
        callers = stats.get(func, (0, 0, 0.0, 0.0, {}))[4]
        # For the function itself its tottime per caller is exact; above it, cumtime shares.
        spread = {c: v[2] if first else v[3] for c, v in callers.items()}
        whole = sum(spread.values())
        if depth == 0 or not whole:
            totals["asyncio event loop, other"] += amount
            return
        for caller, share in spread.items():
            attribute(caller, amount * share / whole, depth - 1, False)

    for func, (_cc, _nc, tottime, _ct, _callers) in stats.items():
        attribute(func, tottime, 4, True)
    overall = sum(totals.values())
    lines = [f"{100 * t / overall:5.1f} %  {name}" for name, t in totals.most_common(top)]
    http = sum(t for name, t in totals.items() if name.startswith("HTTP"))
    ours = sum(t for name, t in totals.items() if name.startswith("pcxbatch"))
    lines.append(
        f"HTTP stack in all {100 * http / overall:.0f} %, pcxbatch's own code"
        f" {100 * ours / overall:.0f} %, of {overall:.1f} s profiled"
    )
    return lines


def item6_big_files(bench: Bench) -> None:
    """``pcxbatch validate`` on a 1,000,000-row CSV and a 100,000-row .xlsx (whole command)."""
    big_csv = bench.work / "big-1000000.csv"
    _write_big_csv(big_csv, 1_000_000)
    ran = run_measured(
        [*PCXBATCH, "validate", str(big_csv), "--action", "deactivate", "--updated-by", "bench"],
        cwd=bench.work,
    )
    if ran.code != 0:
        raise RuntimeError(f"validate exited {ran.code}:\n{ran.stdout}\n{ran.stderr}")
    size = big_csv.stat().st_size / 1e6
    check(bench, "6.", "validate 1,000,000-row CSV, time", ran.wall, 15.0, "s", False)
    check(
        bench,
        "6.",
        "validate 1,000,000-row CSV, peak RSS",
        ran.peak_mb,
        1024.0,
        "MB",
        False,
        detail=f"{size:.0f} MB file, {ran.cpu:.1f} s CPU; {_last_lines(ran.stdout, bench.work)}",
    )
    big_xlsx = bench.work / "big-100000.xlsx"
    _write_big_xlsx(big_xlsx, 100_000)
    ran = run_measured(
        [*PCXBATCH, "validate", str(big_xlsx), "--action", "deactivate", "--updated-by", "bench"],
        cwd=bench.work,
    )
    if ran.code != 0:
        raise RuntimeError(f"validate exited {ran.code}:\n{ran.stdout}\n{ran.stderr}")
    check(
        bench,
        "6.",
        "validate 100,000-row .xlsx, time",
        ran.wall,
        15.0,
        "s",
        False,
        detail=f"{big_xlsx.stat().st_size / 1e6:.1f} MB file, peak RSS {ran.peak_mb:.0f} MB;"
        f" {_last_lines(ran.stdout, bench.work)}",
    )


def _last_lines(text: str, folder: Path) -> str:
    text = text.replace(f"{folder}{os.sep}", "")
    return " | ".join(" ".join(line.split()) for line in text.strip().splitlines()[:3])


def _fake_rows(n: int) -> Any:
    """``n`` distinct UUID-shaped IDs with an e-mail and a case reference (seeded, fast)."""
    rng = random.Random(5)
    for i in range(n):
        h = f"{rng.getrandbits(128):032x}"
        yield (
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}",
            f"user.{i}@example.com",
            f"CASE-{i:07d}",
        )


def _write_big_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["User ID", "Email", "Case ref"])
        writer.writerows(_fake_rows(rows))


def _write_big_xlsx(path: Path, rows: int) -> None:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = workbook.add_worksheet("hits")
    sheet.write_row(0, 0, ["User ID", "Email", "Case ref"])
    for r, row in enumerate(_fake_rows(rows), start=1):
        sheet.write_row(r, 0, row)
    workbook.close()


ITEMS: dict[str, Callable[[Bench], None]] = {
    "1": item1_at_the_limit,
    "2": item2_finding_the_limit,
    "3": item3_latency,
    "4": item4_against_a_loop,
    "5": item5_overhead,  # also the run-memory part of item 6
    "6": item6_big_files,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen items; print every figure beside its target; exit 1 if one missed."""
    parser = argparse.ArgumentParser(prog="bench/throughput.py", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated items, e.g. 1,5 (default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(ITEMS)
    unknown = [c for c in chosen if c not in ITEMS]
    if unknown:
        parser.error(f"unknown item(s): {', '.join(unknown)}")
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="pcxbatch-bench-"))
    load = os.getloadavg()
    print(
        f"pcxbatch throughput benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" {os.cpu_count()} CPUs, load average {load[0]:.2f}, Python {sys.version.split()[0]}",
        flush=True,
    )
    try:
        bench = Bench(work)
        for item in chosen:
            print(f"--- item {item}: {(ITEMS[item].__doc__ or '').splitlines()[0]}", flush=True)
            ITEMS[item](bench)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    if chosen == list(ITEMS):
        check(bench, "7.", "whole benchmark, wall time", total, TIME_LIMIT, "s", False)
    else:
        print(f"(items {','.join(chosen)} took {total:.0f} s)")
    failed = [c for c in bench.checks if not c.passed]
    print(f"=== {len(bench.checks) - len(failed)} of {len(bench.checks)} targets met", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "load_average": load,
                    "seconds": total,
                    "checks": [c.__dict__ for c in bench.checks],
                    "notes": bench.notes,
                },
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
