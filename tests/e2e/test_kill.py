"""Proof by killing: a run SIGKILLed again and again, then finished, loses and repeats nothing."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pcxbatch.sandbox.users import seed_users

from .conftest import pcxbatch
from .test_cron import finish, puts, start
from .test_run import write_csv

KILLS = 24


def recorded(report_dir: Path) -> set[str]:
    """Users whose row has an outcome in any journal under ``report_dir`` (read-only)."""
    users: set[str] = set()
    for path in report_dir.glob("*/journal.sqlite"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            users.update(
                u for (u,) in db.execute("SELECT user_id FROM rows WHERE outcome IS NOT NULL")
            )
        except sqlite3.OperationalError:
            pass  # killed before its tables existed
        finally:
            db.close()
    return users


def test_twenty_kills_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    settings: dict[str, Any] = {"users": 700, "seed": 11, "latency_ms": 20}
    users = seed_users(700, 11)
    # Deactivations and status changes of every kind, users already inactive included: the read
    # before sending knows them, so a 409 after a kill mid-request is settled, never guessed.
    rows: list[list[str]] = []
    for u in users[:500]:
        target = (
            "inactive" if len(rows) % 3 else ("rejected" if u["status"] == "active" else "active")
        )
        rows.append([u["user_id"], target])
    path = write_csv(tmp_path / "in.csv", ["user_id", "status"], rows)

    def job_file(server: Any, name: str) -> Path:
        job = tmp_path / f"{name}.yaml"
        job.write_text(
            f"name: {name}\ninput: {path}\nupdated_by: kill-test\nbase_url: {server.base_url}\n"
            f"report_dir: {tmp_path / name}\nyes: true\nrate: 1000\nconcurrency: 8\n"
        )
        return job

    # The reference: the same file, an identical sandbox, no interruption.
    calm = sandbox_factory(**settings)
    reference = pcxbatch("run", job_file(calm, "calm"), env={"PCX_API_KEY": calm.api_key})
    assert reference.code == 0, reference.stderr
    expected = [(r["row"], r["user_id"], r["outcome"], r["confirmed"]) for r in reference.results()]

    server = sandbox_factory(**settings)
    job = job_file(server, "killed")
    env = {"PCX_API_KEY": server.api_key}
    rng = random.Random(20261123)
    checkpoints: list[tuple[set[str], int]] = []
    kills = 0
    while kills < KILLS:
        proc = start("run", job, env=env)
        seen = len(puts(server))
        # Kill after a random number of further requests: 0 kills it while starting up or
        # reading, small numbers kill it right after requests left and before their answers.
        wanted = seen + rng.choice([0, 1, 2, 5, 10, 25])
        deadline = time.monotonic() + 20
        while len(puts(server)) < wanted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        if proc.poll() is not None:
            break  # it finished before we could kill it again
        proc.send_signal(signal.SIGKILL)
        finish(proc)
        kills += 1
        # What the journal holds now must never be sent again, whatever runs next.
        checkpoints.append((recorded(tmp_path / "killed"), len(puts(server))))
    assert kills >= 20, f"only {kills} kills: the run finished too fast to test"

    final = pcxbatch("run", job, env=env)
    assert final.code == 0, final.stderr + final.stdout
    results = final.results()
    got = [(r["row"], r["user_id"], r["outcome"], r["confirmed"]) for r in results]
    assert got == expected
    assert all(r["confirmed"] == "yes" for r in results)
    assert Counter(r["outcome"] for r in results) == Counter(e[2] for e in expected)
    for r in results:
        assert server.sandbox.status_of(r["user_id"]) == r["target_status"], r
    log = puts(server)
    for done, mark in checkpoints:
        again = {r.user_id for r in log[mark:]} & done
        assert not again, f"sent again after their outcome was recorded: {sorted(again)[:5]}"
