"""Cron-grade runs, end to end: interrupts, resume, locks, retrying failures, JSON logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pcxbatch.sandbox.users import seed_users

from .conftest import PCXBATCH, REPO, Ran, pcxbatch
from .test_run import write_csv


def active_ids(n: int, seed: int, count: int) -> list[str]:
    return [u["user_id"] for u in seed_users(n, seed) if u["status"] == "active"][:count]


def write_job(tmp_path: Path, server: Any, input_path: Path, **extra: Any) -> Path:
    lines = [
        "name: nightly",
        f"input: {input_path}",
        "action: deactivate",
        "updated_by: cron",
        f"base_url: {server.base_url}",
        f"report_dir: {tmp_path / 'reports'}",
        "yes: true",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path = tmp_path / "nightly.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(*args: str | Path, env: dict[str, str]) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PCX_")}
    base.update(env)
    return subprocess.Popen(
        [str(PCXBATCH), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=base,
        cwd=REPO,
    )


def puts(server: Any) -> list[Any]:
    return [r for r in server.sandbox.requests if r.method == "PUT"]


def wait_for_puts(server: Any, n: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(puts(server)) < n and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.005)


def finish(proc: subprocess.Popen[str]) -> Ran:
    stdout, stderr = proc.communicate(timeout=60)
    return Ran(proc.returncode, stdout, stderr)


def test_sigint_stops_cleanly_and_resume_finishes_the_run(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=3, latency_ms=100)
    ids = active_ids(200, 3, 80)
    job = write_job(
        tmp_path,
        server,
        write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids]),
        rate=40,
        concurrency=4,
    )
    proc = start("run", job, env={"PCX_API_KEY": server.api_key})
    wait_for_puts(server, 10, proc)
    proc.send_signal(signal.SIGINT)
    ran = finish(proc)
    assert ran.code == 3, ran.stderr
    assert f"pcxbatch resume {ran.run_dir}" in ran.stdout
    first = ran.results()
    outcomes = Counter(r["outcome"] for r in first)
    assert outcomes["not_attempted"] > 0 and outcomes["applied"] >= 10
    sent_before = len(puts(server))
    assert sent_before == outcomes["applied"]  # in-flight requests finished and were recorded
    done_before = {r["user_id"] for r in first if r["outcome"] == "applied"}

    resumed = pcxbatch("resume", ran.run_dir, env={"PCX_API_KEY": server.api_key})
    assert resumed.code == 0, resumed.stderr
    assert resumed.run_dir == ran.run_dir
    final = resumed.results()
    assert Counter(r["outcome"] for r in final) == {"applied": 80}
    again = {r.user_id for r in puts(server)[sent_before:]}
    assert not again & done_before  # nothing with an outcome was sent again
    assert all(server.sandbox.status_of(i) == "inactive" for i in ids)
    assert resumed.summary()["counts"]["applied"] == 80


def test_a_second_run_of_the_same_job_is_turned_away(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=100, seed=4, latency_ms=200)
    ids = active_ids(100, 4, 30)
    job = write_job(
        tmp_path,
        server,
        write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids]),
        rate=20,
        concurrency=2,
    )
    first = start("run", job, env={"PCX_API_KEY": server.api_key})
    try:
        wait_for_puts(server, 1, first)
        second = pcxbatch("run", job, env={"PCX_API_KEY": server.api_key})
        assert second.code == 4
        assert "another run of job 'nightly' is in progress" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert finish(first).code == 3


def test_json_logs_are_one_object_per_line_without_secrets(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=100, seed=8, rate=50, burst=1, fail_rate=0.2)
    ids = [*active_ids(100, 8, 20), "00000000-0000-4000-8000-000000000000"]
    job = write_job(
        tmp_path, server, write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids]), rate=100
    )
    ran = pcxbatch("run", job, "--log-format", "json", env={"PCX_API_KEY": server.api_key})
    assert ran.code == 1
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_planned" and names[-1] == "run_finished"
    assert "row_retried" in names and "row_not_found" in names
    finished = events[-1]
    assert finished["counts"] == {"applied": 20, "not_found": 1}
    assert finished["exit_code"] == 1
    secret = server.api_key.split("_", 2)[2]
    assert secret not in ran.stderr + ran.stdout


def test_the_failure_guard_stops_a_hopeless_run(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=50, seed=9)
    unknown = [[f"0000000{i:02d}-0000-4000-8000-000000000000"] for i in range(60)]
    # Without a read before sending (PCX too large to list, or the job says never), unknown
    # users are only found out by sending; with one, none of them would be sent at all.
    job = write_job(
        tmp_path, server, write_csv(tmp_path / "in.csv", ["user_id"], unknown),
        max_failure_rate=0.5, failure_window=10, concurrency=1, read_before_send="never",
    )  # fmt: skip
    ran = pcxbatch("run", job, env={"PCX_API_KEY": server.api_key})
    assert ran.code == 3
    assert "10 of the last 10 rows failed" in ran.stdout
    counts = Counter(r["outcome"] for r in ran.results())
    assert counts["not_found"] == 10 and counts["not_attempted"] == 50
    assert len(puts(server)) == 10
