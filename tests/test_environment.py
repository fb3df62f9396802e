"""What the disk and the report folder refuse, in-process: one line, a meaningful exit code,
nothing half-written, and never a file destroyed through the lock.

The cases that need another Unix user or a real process run end to end
(``tests/e2e/test_other_user.py``, ``tests/e2e/test_cron.py``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_runner import context, make_job, puts_per_user, results, users

from pcxbatch.credentials import Credentials
from pcxbatch.errors import ConfigError, ExitCode, StoppedError, UnusableError
from pcxbatch.journal import Journal
from pcxbatch.report import table
from pcxbatch.reportdir import environment_problem
from pcxbatch.runner import resume_run, run_job
from pcxbatch.sandbox import Sandbox, SandboxConfig

SEED = 4


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 2))
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    job.report_dir.mkdir(mode=0o700)
    lock = job.report_dir / f".{job.name}.lock"
    lock.symlink_to(victim)
    with pytest.raises(UnusableError, match="symbolic link") as caught:
        run_job(job, context(sandbox))
    assert str(lock) in str(caught.value)
    lock.unlink()
    os.link(victim, lock)  # a second name for someone's file
    with pytest.raises(UnusableError, match="not a lock file pcxbatch made"):
        run_job(job, context(sandbox))
    assert victim.read_text() == "keep me\n"
    assert not puts_per_user(sandbox)


def test_a_report_folder_others_may_write_in_is_refused(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 2))
    job.report_dir.mkdir()
    job.report_dir.chmod(0o777)
    with pytest.raises(UnusableError, match=f"chmod go-w {job.report_dir}"):
        run_job(job, context(sandbox))
    job.report_dir.chmod(0o755)
    assert run_job(job, context(sandbox)).exit_code is ExitCode.OK


def test_a_read_only_disk_is_one_line_before_anything_is_made(
    tmp_path: Path, monkeypatch: Any
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 2))

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(UnusableError, match="the disk is read-only") as caught:
        run_job(job, context(sandbox))
    assert "\n" not in str(caught.value)
    assert not puts_per_user(sandbox)


def test_a_disk_that_fills_while_sending_stops_resumably(tmp_path: Path, monkeypatch: Any) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 12), concurrency=1)
    real = Journal.commit
    calls = Counter[str]()

    def filling(self: Journal, *args: Any, **kwargs: Any) -> None:
        calls["commit"] += 1
        if calls["commit"] > 6:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "commit", filling)
    with pytest.raises(StoppedError, match="the disk is full") as caught:
        run_job(job, context(sandbox))
    assert caught.value.exit_code is ExitCode.STOPPED
    assert "pcxbatch resume" in str(caught.value)
    monkeypatch.setattr(Journal, "commit", real)  # space freed
    (run_dir,) = [p for p in job.report_dir.iterdir() if p.is_dir()]
    resumed = resume_run(run_dir, context(sandbox))
    assert resumed.exit_code is ExitCode.OK
    assert [r["outcome"] for r in results(resumed)] == ["applied"] * 12


def test_a_full_disk_while_writing_the_report_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: Any
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 5))

    def full(self: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(table._CsvSink, "finish", full)
    with pytest.raises(StoppedError, match="could not be written: the disk is full"):
        run_job(job, context(sandbox))
    (run_dir,) = [p for p in job.report_dir.iterdir() if p.is_dir()]
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("journal")) == []
    monkeypatch.undo()
    resumed = resume_run(run_dir, context(sandbox))  # writes the report, sends nothing again
    assert [r["outcome"] for r in results(resumed)] == ["applied"] * 5
    assert max(puts_per_user(sandbox).values()) == 1


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "pcx.key"
    key.write_text("PCX_API_KEY=pcx_abc123_0123456789abcdef\n")
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {key}"):
        Credentials.from_file(key)
    key.chmod(0o600)
    assert Credentials.from_file(key).describe() == "API key pcx_abc123_…"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only"),
        (PermissionError(errno.EACCES, "Permission denied", "/r"), "permission denied (/r)"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
        (sqlite3.DatabaseError("file is not a database"), "damaged"),
        (ValueError("a bug"), None),
        (OSError(errno.ECONNRESET, "reset"), None),
    ],
)
def test_what_counts_as_the_environments_problem(error: Exception, words: str | None) -> None:
    found = environment_problem(error)
    assert (found is None) if words is None else (found is not None and words in found)
