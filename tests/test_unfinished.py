"""Unfinished runs, in-process: never forgotten, never in the way, and resumed only as they were.

A run stopped part-way stays the job's business until it is resumed or abandoned: a dry run or
a preview does not displace it, a new input starts a new run that names it (and exits 3), a
resume says how old it is, may change its pacing and never its target.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_runner import (
    Clock,
    RecordingUI,
    context,
    interrupt_after,
    make_job,
    puts_per_user,
    results,
    summary,
    users,
)

from pcxbatch.config import Job
from pcxbatch.context import RunContext
from pcxbatch.errors import ExitCode, UnusableError
from pcxbatch.journal import JOURNAL_NAME
from pcxbatch.runner import abandon_run, preview_job, resume_run, retry_failed, run_job
from pcxbatch.sandbox import Sandbox, SandboxConfig

SEED = 4


@dataclass
class Stopped:
    """A job whose first run was stopped by SIGTERM after two rows."""

    sandbox: Sandbox
    job: Job
    run_dir: Path
    clock: Clock

    def ctx(self, ui: RecordingUI | None = None) -> RunContext:
        return context(self.sandbox, ui, clock=self.clock)

    def new_export(self) -> None:
        """Tonight's export replaces the file: one more row."""
        self.job.input.write_text(
            self.job.input.read_text() + f"u-{len(self.job.input.read_text())},x\n"
        )


def stopped_run(tmp_path: Path, **settings: Any) -> Stopped:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED, latency_ms=20))
    job = make_job(tmp_path, users(sandbox, "active", 20), concurrency=2, **settings)
    clock = Clock()
    first = run_job(job, context(sandbox, interrupt_after(2), clock=clock))
    assert first.exit_code is ExitCode.STOPPED and first.run_dir is not None
    return Stopped(sandbox, job, first.run_dir, clock)


def test_a_dry_run_or_a_preview_never_displaces_an_unfinished_run(tmp_path: Path) -> None:
    run = stopped_run(tmp_path)
    planned = run_job(replace(run.job, dry_run=True), run.ctx())
    assert planned.exit_code is ExitCode.OK and planned.run_dir != run.run_dir
    preview_job(run.job, run.ctx())
    ui = RecordingUI()
    again = run_job(run.job, run.ctx(ui))
    assert ui.resumed == [run.run_dir] and again.run_dir == run.run_dir and not ui.left
    assert again.exit_code is ExitCode.OK
    assert [r["outcome"] for r in results(again)] == ["applied"] * 20
    assert sum(puts_per_user(run.sandbox).values()) == 20  # each user once: nothing sent twice


def test_a_resume_says_how_old_the_run_is_and_may_change_only_its_pacing(tmp_path: Path) -> None:
    run = stopped_run(tmp_path, base_url="https://prod-api.pcxpay.com/v1")
    run.clock.now += timedelta(hours=7)
    with pytest.raises(UnusableError, match="a resume cannot send to https://staging"):
        resume_run(run.run_dir, run.ctx(), {"base_url": "https://staging.example/v1"})
    with pytest.raises(UnusableError, match="cannot change what the run sends"):
        resume_run(run.run_dir, run.ctx(), {"reason": "another"})
    ui = RecordingUI()
    pacing = {"rate": 500.0, "concurrency": 1, "base_url": "https://api.pcxpay.com/v1"}
    resumed = resume_run(run.run_dir, run.ctx(ui), pacing)
    assert resumed.exit_code is ExitCode.OK
    (seen,) = ui.resumed_runs
    assert seen.path == run.run_dir and 7 * 3600 <= seen.age_seconds < 8 * 3600
    assert seen.remaining > 0 and seen.started.startswith("2026-12-01T09:")
    assert max(puts_per_user(run.sandbox).values()) == 1


def test_abandon_closes_an_unfinished_run_and_later_runs_stop_naming_it(tmp_path: Path) -> None:
    run = stopped_run(tmp_path)
    run.new_export()
    named = run_job(run.job, run.ctx())
    assert named.exit_code is ExitCode.STOPPED
    assert [u.path for u in named.unfinished] == [run.run_dir]
    closed = abandon_run(run.run_dir, run.ctx())
    assert closed.exit_code is ExitCode.OK and closed.note and "abandoned" in closed.note
    assert Counter(r["outcome"] for r in results(closed))["not_attempted"] > 0
    assert summary(closed)["stopped"] == "abandoned by ana"
    log = (run.job.report_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    cancel = [b for b in (json.loads(line)["body"] for line in log) if b["event"] == "run.cancel"]
    assert len(cancel) == 1 and cancel[0]["actor"]["operator"] == "ana"
    assert cancel[0]["objects"]["run"] == run.run_dir.name
    run.new_export()
    later = run_job(run.job, run.ctx())
    assert later.unfinished == [] and later.exit_code is not ExitCode.STOPPED


def test_retry_failed_with_nothing_to_retry_leaves_no_folder(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 3))
    done = run_job(job, context(sandbox))
    assert done.run_dir is not None
    before = sorted(job.report_dir.iterdir())
    retried = retry_failed(done.run_dir, context(sandbox))
    assert retried.run_dir is None and retried.exit_code is ExitCode.OK
    assert retried.note and "nothing to retry" in retried.note
    assert sorted(job.report_dir.iterdir()) == before


def test_retrying_an_unfinished_run_hands_its_rows_over(tmp_path: Path) -> None:
    run = stopped_run(tmp_path)
    retried = retry_failed(run.run_dir, run.ctx())
    assert retried.exit_code is ExitCode.OK
    assert max(puts_per_user(run.sandbox).values()) == 1  # the old run's rows, each once
    assert {r["outcome"] for r in results(retried)} == {"applied"}
    with pytest.raises(UnusableError, match="handed to"):
        resume_run(run.run_dir, run.ctx())
    run.new_export()
    later = run_job(run.job, run.ctx())
    assert later.unfinished == []


def test_a_damaged_journal_is_one_line_and_other_jobs_are_unaffected(tmp_path: Path) -> None:
    run = stopped_run(tmp_path)
    (run.run_dir / JOURNAL_NAME).write_bytes(b"this is not SQLite" * 500)
    for leftover in run.run_dir.glob(f"{JOURNAL_NAME}-*"):
        leftover.unlink()
    with pytest.raises(UnusableError, match="journal is damaged") as caught:
        run_job(run.job, run.ctx())
    assert str(run.run_dir) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(UnusableError, match="journal is damaged"):
        resume_run(run.run_dir, run.ctx())
    other = make_job(tmp_path / "other", users(run.sandbox, "active", 2))
    other = replace(other, name="other-job", report_dir=run.job.report_dir)
    assert run_job(other, run.ctx()).exit_code is ExitCode.OK


def test_max_rows_is_checked_by_a_dry_run_and_a_preview(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 5)
    with pytest.raises(UnusableError, match="more than the job's max_rows"):
        run_job(make_job(tmp_path, ids, max_rows=4, dry_run=True), context(sandbox))
    with pytest.raises(UnusableError, match="more than the job's max_rows"):
        preview_job(make_job(tmp_path, ids, max_rows=4), context(sandbox))
    assert not [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    assert not sandbox.requests  # the preview refused before it listed anyone


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_a_run_folder_of_another_owner_is_never_read(tmp_path: Path) -> None:
    # Rows planted in a folder named like one of the job's runs, whose journal is not ours.
    run = stopped_run(tmp_path)
    os.chown(run.run_dir / JOURNAL_NAME, 12345, 12345)
    ui = RecordingUI()
    fresh = run_job(run.job, run.ctx(ui))
    assert fresh.run_dir != run.run_dir and not ui.resumed and not ui.left
