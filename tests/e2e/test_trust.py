"""Every row's report agrees with the truth: the installed CLI over real sockets against a sandbox
playing every answer that leaves the truth open (issue 11), with kills and resumes too.

The truth is what the sandbox holds: the status each user had before the run (its seeded users)
and the one it has after. A row may be ``applied`` only if its user is in the wanted state now
and, when confirmed, was not before; ``unchanged`` only if it was so before; a confirmed
``failed`` only if the change was not made; and an unconfirmed row names both possibilities.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pcxbatch.sandbox.faults import PAYOUT_PENDING
from pcxbatch.sandbox.users import seed_users

from .conftest import Ran, pcxbatch
from .test_cron import finish, puts, start
from .test_run import write_csv

USERS, SEED = 300, 11
#: Every fault of issue 11: 502/503, applied-then-504, dropped connections, refusing 409s, 200s
#: that change nothing (showing the user as it was, or a proxy's page), applied-then-503, and
#: answers padded far past the client's cap.
FAULTS: dict[str, Any] = {
    "fail_rate": 0.05,
    "ghost_rate": 0.03,
    "drop_rate": 0.02,
    "refuse_rate": 0.08,
    "wrong_status_rate": 0.04,
    "html_rate": 0.04,
    "applied_503_rate": 0.04,
    "huge_rate": 0.04,
}
MISSING = "00000000-0000-4000-8000-00000000000"


def rows_of_every_kind() -> tuple[list[list[str]], dict[str, str]]:
    """Deactivations of users in every status (already inactive ones included), status changes
    (to the status some users already have, too), unknown users; and every user's status."""
    users = seed_users(USERS, SEED)
    rows: list[list[str]] = []
    for i, user in enumerate(users):
        if i % 5 == 4 and user["status"] in ("active", "rejected", "pending_verification"):
            rows.append([user["user_id"], "rejected"])
        else:
            rows.append([user["user_id"], "inactive"])
    rows += [[f"{MISSING}{d}", "inactive"] for d in range(4)]
    return rows, {u["user_id"]: u["status"] for u in users}


def job_file(tmp_path: Path, server: Any, name: str, **extra: Any) -> Path:
    rows, _ = rows_of_every_kind()
    path = write_csv(tmp_path / f"{name}.csv", ["user_id", "status"], rows)
    lines = [
        f"name: {name}",
        f"input: {path}",
        "updated_by: trust-test",
        f"base_url: {server.base_url}",
        f"report_dir: {tmp_path / name}",
        "yes: true",
        "rate: 1000",
        "concurrency: 8",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    job = tmp_path / f"{name}.yaml"
    job.write_text("\n".join(lines) + "\n")
    return job


def check_against_the_truth(ran: Ran, before: dict[str, str], server: Any) -> list[dict[str, str]]:
    rows = ran.results()
    assert len(rows) == USERS + 4
    for r in rows:
        uid, wanted, outcome, sure = r["user_id"], r["target_status"], r["outcome"], r["confirmed"]
        was, now = before.get(uid), server.sandbox.status_of(uid)
        assert sure in ("yes", "no"), r
        if sure == "no":
            assert "either" in r["message"], r
        if outcome == "not_found":
            assert was is None and sure == "yes", r
        elif outcome == "unchanged":
            assert was == wanted == now and sure == "yes", r
        elif outcome == "applied":
            assert now == wanted, r
            assert sure == "no" or was != wanted, r  # no "applied" for a user already so
        else:
            assert outcome == "failed", r
            assert sure == "no" or now != wanted, r  # no "failed" for a change that was made
    return rows


def test_every_row_agrees_with_the_sandbox_under_every_open_answer(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=USERS, seed=SEED, **FAULTS)
    _, before = rows_of_every_kind()
    ran = pcxbatch("run", job_file(tmp_path, server, "trust"), env={"PCX_API_KEY": server.api_key})
    assert ran.code == 5, ran.stderr  # the refused deactivations failed
    rows = check_against_the_truth(ran, before, server)
    assert all(r["confirmed"] == "yes" for r in rows)  # 300 users: one page, read both times
    refused = [r for r in rows if PAYOUT_PENDING in r["message"]]
    assert refused and {r["outcome"] for r in refused} == {"failed"}
    faults = Counter(r.fault for r in server.sandbox.requests)
    assert all(faults[name] for name in ("ghost", "wrong_status", "html", "applied_503", "huge"))
    already = {uid for uid, status in before.items() if status == "inactive"}
    assert not {r.user_id for r in puts(server)} & already  # read first, never sent
    summary = ran.summary()
    assert summary["unconfirmed"] == 0 and summary["exit_code"] == 5
    assert [read["when"] for read in summary["status_reads"]] == ["before", "after"]


def test_without_reads_no_row_claims_more_than_it_knows(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=USERS, seed=SEED, **FAULTS)
    _, before = rows_of_every_kind()
    job = job_file(tmp_path, server, "blind", read_before_send="never")
    ran = pcxbatch("run", job, env={"PCX_API_KEY": server.api_key})
    assert ran.code == 5, ran.stderr
    rows = check_against_the_truth(ran, before, server)
    assert Counter(r["confirmed"] for r in rows)["no"] > 0
    # No status read: only the preflight's one probe of the list.
    assert [r.query for r in server.sandbox.requests if r.method == "GET"] == ["limit=1"]


def test_killed_and_resumed_runs_agree_with_the_sandbox(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """SIGKILL at random points (while reading, mid-request, while settling), then resume."""
    server = sandbox_factory(users=USERS, seed=SEED, latency_ms=15, **FAULTS)
    _, before = rows_of_every_kind()
    job = job_file(tmp_path, server, "killed")
    env = {"PCX_API_KEY": server.api_key}
    rng = random.Random(20261201)
    kills = 0
    for _ in range(8):
        proc = start("run", job, env=env)
        wanted = len(puts(server)) + rng.choice([0, 1, 3, 10, 40])
        deadline = time.monotonic() + 30
        while len(puts(server)) < wanted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        finish(proc)
        kills += 1
    assert kills >= 4, f"only {kills} kills: the run finished too fast to test"
    final = pcxbatch("run", job, env=env)
    assert final.code == 5, final.stderr + final.stdout
    rows = check_against_the_truth(final, before, server)
    assert all(r["confirmed"] == "yes" for r in rows), [r for r in rows if r["confirmed"] != "yes"][
        :3
    ]
    assert all(r["outcome"] != "not_attempted" for r in rows)
