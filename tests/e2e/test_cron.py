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
    server = sandbox_factory(users=100, seed=9, fail_rate=1.0)
    ids = [[i] for i in active_ids(100, 9, 60)]
    job = write_job(
        tmp_path, server, write_csv(tmp_path / "in.csv", ["user_id"], ids),
        max_failure_rate=0.5, failure_window=10, concurrency=1, max_attempts=1,
    )  # fmt: skip
    ran = pcxbatch("run", job, env={"PCX_API_KEY": server.api_key})
    assert ran.code == 3
    assert "10 of the last 10 rows failed" in ran.stdout
    counts = Counter(r["outcome"] for r in ran.results())
    assert counts["failed"] == 10 and counts["not_attempted"] == 50
    assert len(puts(server)) == 10


# --- the README's crontab line, as written -------------------------------------------------------


def readme_cron_command() -> str:
    """The command of the README's crontab line (the five time fields cut off)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Unattended runs (cron)", 1)[1].split("```cron", 1)[1].split("```")[0]
    (line,) = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    return line.split(None, 5)[5]


def cron_site(tmp_path: Path, server: Any, rows: list[list[str]] | None) -> tuple[Path, Path]:
    """A stand-in for /opt/pcxbatch (the real console script, the repo's nightly job pointed at
    the sandbox and a key file of its own) and for /var/log/pcxbatch."""
    site, logs = tmp_path / "opt", tmp_path / "log"
    (site / ".venv" / "bin").mkdir(parents=True)
    (site / ".venv" / "bin" / "pcxbatch").symlink_to(PCXBATCH)
    (site / "jobs").mkdir()
    (site / "sample_inputs").mkdir()
    logs.mkdir()
    key = tmp_path / "pcx-api-key"
    key.write_text(f"PCX_API_KEY={server.api_key}\n")
    key.chmod(0o600)
    job = (REPO / "jobs" / "nightly-fraud-ring.yaml").read_text(encoding="utf-8")
    job = job.replace("https://prod-api.pcxpay.com/v1", server.base_url)
    job = job.replace("/etc/pcxbatch/pcx-api-key", str(key))
    (site / "jobs" / "nightly-fraud-ring.yaml").write_text(job, encoding="utf-8")
    sample = REPO / "sample_inputs" / "fraud_ring.csv"
    if rows is None:
        (site / "sample_inputs" / "fraud_ring.csv").write_bytes(sample.read_bytes())
    else:
        write_csv(site / "sample_inputs" / "fraud_ring.csv", ["user_id", "updated_by"], rows)
    return site, logs


def cron(shell: str, tmp_path: Path, site: Path, logs: Path) -> subprocess.CompletedProcess[str]:
    """Run the README's line the way cron does: ``sh -c`` (or bash), a bare environment."""
    command = readme_cron_command()
    command = command.replace("/opt/pcxbatch", str(site)).replace("/var/log/pcxbatch", str(logs))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOGNAME": "cron", "SHELL": shell}
    return subprocess.run(
        [shell, "-c", command], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_readme_cron_line_alarms_on_every_code_but_0(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=3)
    clean = [[i, "fraud-ops"] for i in active_ids(200, 3, 5)]
    site, logs = cron_site(tmp_path / "clean", server, clean)
    for shell in ("/bin/sh", "/bin/bash"):
        quiet = cron(shell, tmp_path / "clean", site, logs)
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        assert quiet.stdout == "" and quiet.stderr == ""  # cron sends no mail
    log = (logs / "nightly.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in log].count("run_finished") == 2

    # The sample export has a row with an unknown action: a user left as they were (exit 1).
    site, logs = cron_site(tmp_path / "sample", server, None)
    loud = cron("/bin/bash", tmp_path / "sample", site, logs)
    assert loud.returncode == 1
    assert loud.stdout.strip() == (
        f"pcxbatch nightly-fraud-ring: exit code 1, see {logs / 'nightly.jsonl'}"
    )

    # A key file others can read: nothing is sent, one JSON error in the log, and a mail.
    key = tmp_path / "sample" / "pcx-api-key"
    key.chmod(0o644)
    refused = cron("/bin/sh", tmp_path / "sample", site, logs)
    assert refused.returncode == 2 and "exit code 2" in refused.stdout
    events = [json.loads(line) for line in (logs / "nightly.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "error" and f"chmod 600 {key}" in events[-1]["problems"][0]


# --- signals, hang-ups and broken pipes ----------------------------------------------------------


def slow_job(tmp_path: Path, server: Any, n: int = 60, **extra: Any) -> Path:
    ids = active_ids(200, 3, n)
    path = write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids])
    return write_job(tmp_path, server, path, rate=40, concurrency=4, **extra)


def test_sighup_stops_a_run_like_sigterm(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=200, seed=3, latency_ms=100)
    job = slow_job(tmp_path, server)
    proc = start("run", job, env={"PCX_API_KEY": server.api_key})
    wait_for_puts(server, 8, proc)
    proc.send_signal(signal.SIGHUP)
    ran = finish(proc)
    assert ran.code == 3, ran.stderr
    assert "SIGHUP" in ran.stdout and f"pcxbatch resume {ran.run_dir}" in ran.stdout
    outcomes = Counter(r["outcome"] for r in ran.results())
    assert outcomes["not_attempted"] > 0 and outcomes["applied"] == len(puts(server))
    assert ran.summary()["exit_code"] == 3


def run_with_streams(job: Path, env: dict[str, str], **streams: Any) -> int:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PCX_")}
    base.update(env)
    proc = subprocess.run(
        [str(PCXBATCH), "run", str(job), "--log-format", "json", "--summary"],
        env=base, cwd=REPO, stdin=subprocess.DEVNULL, timeout=120, check=False, **streams,
    )  # fmt: skip
    return proc.returncode


def only_run_dir(tmp_path: Path) -> Path:
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    return run_dir


def assert_complete_report(run_dir: Path, rows: int, code: int) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_code"] == code and sum(summary["counts"].values()) == rows
    assert (run_dir / "results.csv").read_text(encoding="utf-8-sig").count("\n") == rows + 1


def test_a_closed_stderr_never_stops_a_run(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=200, seed=3)
    job = slow_job(tmp_path, server, n=30)
    code = run_with_streams(
        job, {"PCX_API_KEY": server.api_key}, stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(2),
    )  # fmt: skip
    assert code == 0
    assert_complete_report(only_run_dir(tmp_path), 30, 0)


def test_a_pipe_closed_early_never_stops_a_run(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=200, seed=3, latency_ms=20)
    job = slow_job(tmp_path, server, n=30)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first line: every write is EPIPE
    try:
        code = run_with_streams(
            job, {"PCX_API_KEY": server.api_key}, stdout=write_end, stderr=write_end
        )
    finally:
        os.close(write_end)
    assert code == 0
    assert_complete_report(only_run_dir(tmp_path), 30, 0)


def test_a_full_stdout_never_stops_a_run(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=200, seed=3)
    job = slow_job(tmp_path, server, n=10)
    with open("/dev/full", "w") as full:  # every write: ENOSPC
        code = run_with_streams(job, {"PCX_API_KEY": server.api_key}, stdout=full, stderr=full)
    assert code == 0
    assert_complete_report(only_run_dir(tmp_path), 10, 0)


# --- one lock per report folder, a killed apply ----------------------------------------------


def test_a_resume_from_another_directory_meets_the_same_lock(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=3, latency_ms=100)
    ids = active_ids(200, 3, 60)
    write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids])
    (tmp_path / "nightly.yaml").write_text(
        f"input: in.csv\naction: deactivate\nupdated_by: cron\nbase_url: {server.base_url}\n"
        "report_dir: reports\nyes: true\nrate: 15\nconcurrency: 2\n"
    )
    env = {"PCX_API_KEY": server.api_key}
    first = start("run", tmp_path / "nightly.yaml", env=env)
    wait_for_puts(server, 5, first)
    first.send_signal(signal.SIGTERM)
    stopped = finish(first)
    assert stopped.code == 3
    # The same run resumed twice at once, from two other directories, by a relative path.
    (tmp_path / "a").mkdir()
    again = subprocess.Popen(
        [str(PCXBATCH), "resume", stopped.run_dir], env={**os.environ, **env},
        cwd=tmp_path / "a", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_puts(server, len(puts(server)) + 2, again)
    relative = os.path.relpath(stopped.run_dir, REPO)
    second = pcxbatch("resume", relative, env=env, cwd=REPO)
    assert second.code == 4, second.stderr
    assert f"lock: {tmp_path / 'reports'}" in second.stderr
    assert finish(again).code == 0
    assert max(Counter(r.user_id for r in puts(server)).values()) == 1


def test_a_killed_apply_is_resumed_by_applying_again(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=200, seed=3, latency_ms=50)
    ids = active_ids(200, 3, 40)
    job = write_job(
        tmp_path, server, write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids]),
        rate=40, concurrency=2,
    )  # fmt: skip
    env = {"PCX_API_KEY": server.api_key, "PCXBATCH_OPERATOR": "ana"}
    preview = pcxbatch("preview", job, "--plan-out", tmp_path / "plan.json", env=env)
    assert preview.code == 0
    digest = json.loads((tmp_path / "plan.json").read_text())["hash"]
    assert f"plan sha256 {digest}" in preview.stdout
    proc = start("apply", tmp_path / "plan.json", "--yes", env=env)
    wait_for_puts(server, 6, proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    again = pcxbatch("apply", tmp_path / "plan.json", "--yes", env=env)
    assert again.code == 0, again.stderr
    assert "resuming the unfinished run" in again.stdout
    assert f"plan sha256 {digest}" in again.stdout
    assert "previewed by 'ana' (the name the previewer's environment gave)" in again.stdout
    assert "40 user(s) go from active to inactive" in again.stdout
    assert Counter(r["outcome"] for r in again.results()) == {"applied": 40}  # none "unchanged"
    assert len(puts(server)) <= 40 + 2  # at most the requests in flight at the kill went twice
    third = pcxbatch("apply", tmp_path / "plan.json", "--yes", env=env)
    assert third.code == 2 and "applied already" in third.stderr
    assert str(again.run_dir) in third.stderr


def test_tonights_export_starts_a_new_run_and_names_last_nights(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=3, latency_ms=100)
    ids = active_ids(200, 3, 60)
    path = write_csv(tmp_path / "in.csv", ["user_id"], [[i] for i in ids[:40]])
    job = write_job(tmp_path, server, path, rate=40, concurrency=4)
    env = {"PCX_API_KEY": server.api_key}
    proc = start("run", job, env=env)
    wait_for_puts(server, 8, proc)
    proc.send_signal(signal.SIGTERM)
    last_night = finish(proc)
    assert last_night.code == 3
    write_csv(path, ["user_id"], [[i] for i in ids[40:]])  # tonight's export, same file name
    tonight = pcxbatch("run", job, "--log-format", "json", env=env)
    assert tonight.code == 3, tonight.stderr  # every row done, but last night's run is not
    assert tonight.stdout == ""
    events = tonight.events()
    (left,) = [e for e in events if e["event"] == "unfinished_run"]
    assert left["run_dir"] == str(last_night.run_dir) and left["remaining"] > 0
    assert left["age_seconds"] >= 0 and left["resume"] == f"pcxbatch resume {last_night.run_dir}"
    assert events[-1]["event"] == "run_finished" and events[-1]["counts"] == {"applied": 20}
    again = pcxbatch("run", job, env=env)  # still there tomorrow, in words this time
    assert again.code == 3 and f"left unfinished: a run of this job, {last_night.run_dir}" in (
        again.stdout
    )
    assert f"pcxbatch abandon {last_night.run_dir}" in again.stdout
    finished = pcxbatch("resume", last_night.run_dir, env=env)
    assert finished.code == 0 and "ago): " in finished.stdout
    assert Counter(r["outcome"] for r in finished.results()) == {"applied": 40}
    assert pcxbatch("run", job, env=env).code == 0
