"""``pcxbatch run`` end to end: the installed CLI, real sockets, the sandbox with faults on."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from pcxbatch.sandbox.users import seed_users

from .conftest import REPO, pcxbatch


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_readme_demo_job_against_the_built_in_sandbox(tmp_path: Path) -> None:
    ran = pcxbatch(
        "run",
        REPO / "jobs" / "sanctions-deactivate.yaml",
        "--sandbox",
        "--report-dir",
        tmp_path,
    )
    assert ran.code == 1, ran.stderr  # the sample has bad rows on purpose
    rows = ran.results()
    by_outcome = Counter(r["outcome"] for r in rows)
    assert by_outcome == {
        "applied": 24,
        "unchanged": 3,
        "not_found": 1,
        "invalid": 3,
        "duplicate": 1,
    }
    assert [int(r["row"]) for r in rows] == sorted(int(r["row"]) for r in rows)
    assert rows[0]["row"] == "2" and rows[0]["Case ref"] == "CASE-4100"
    sci = next(r for r in rows if r["User ID"] == "1.23457E+14")
    assert sci["outcome"] == "invalid" and "scientific notation" in sci["message"]
    unknown = next(r for r in rows if r["outcome"] == "not_found")
    # Read before sending (200 users: one page), so the unknown user is never sent.
    assert unknown["http_status"] == "" and "no such user" in unknown["message"]
    assert all(r["confirmed"] == "yes" for r in rows)
    summary = ran.summary()
    assert summary["counts"]["applied"] == 24
    assert summary["exit_code"] == 1
    assert summary["input"]["file"] == "sanctions_hits.csv"
    assert (ran.run_dir / "results.csv").stat().st_mode & 0o777 == 0o600


def test_outcomes_agree_with_the_sandbox_under_faults(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(
        users=300, seed=7, rate=100, burst=5, fail_rate=0.05, ghost_rate=0.05, drop_rate=0.05
    )
    users = seed_users(300, 7)
    rows = []
    for u in users[:150]:
        if u["status"] in ("inactive", "pending", "sandbox"):
            rows.append([u["user_id"], "inactive"])
        else:
            rows.append([u["user_id"], "rejected" if u["status"] != "rejected" else "active"])
    rows.append(["00000000-0000-4000-8000-000000000000", "inactive"])
    path = write_csv(tmp_path / "in.csv", ["user_id", "status"], rows)
    ran = pcxbatch(
        "run",
        path,
        "--base-url",
        server.base_url,
        "--report-dir",
        tmp_path / "out",
        "--updated-by",
        "e2e",
        "--rate",
        "150",
        "--concurrency",
        "16",
        "--yes",
        env={"PCX_API_KEY": server.api_key},
    )
    assert ran.code == 1, ran.stderr  # the unknown user fails, everything else goes through
    results = ran.results()
    assert len(results) == 151
    assert ran.summary()["retries"] > 0
    for r in results:
        state = server.sandbox.status_of(r["user_id"])
        if r["outcome"] in ("applied", "unchanged"):
            assert state == r["target_status"], r
        else:
            assert r["outcome"] == "not_found" and state is None, r
    assert server.api_key not in ran.stdout + ran.stderr


def test_dry_run_sends_nothing(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=20, seed=1)
    uid = seed_users(20, 1)[0]["user_id"]
    path = write_csv(tmp_path / "in.csv", ["User ID", "Status"], [[uid, "rejected"], ["a/b", "x"]])
    ran = pcxbatch(
        "run",
        path,
        "--dry-run",
        "--base-url",
        server.base_url,
        "--report-dir",
        tmp_path,
        env={"PCX_API_KEY": server.api_key},
    )
    assert ran.code == 1
    assert [r["outcome"] for r in ran.results()] == ["planned", "invalid"]
    assert not [r for r in server.sandbox.requests if r.method == "PUT"]


def test_a_refused_key_is_one_line_and_exit_2_before_any_change(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=30, seed=2)
    ids = [[u["user_id"]] for u in seed_users(30, 2)]
    path = write_csv(tmp_path / "in.csv", ["user_id"], ids)
    args = ("run", path, "--base-url", server.base_url, "--report-dir", tmp_path / "out")
    more = ("--action", "deactivate", "--updated-by", "ops", "--yes", "--concurrency", "1")
    ran = pcxbatch(*args, *more, env={"PCX_API_KEY": "pcx_wrong_secretsecret"})
    assert ran.code == 2, ran.stderr
    assert "refused the credential (401" in ran.stderr and "Traceback" not in ran.stderr
    assert "secretsecret" not in ran.stdout + ran.stderr
    assert not [r for r in server.sandbox.requests if r.method == "PUT"]
    assert not (tmp_path / "out").exists() or not [
        p for p in (tmp_path / "out").iterdir() if p.is_dir()
    ]
    # A key that may read but not change (403 on the PUT) stops the run mid-way: exit 3.
    ran = pcxbatch(*args, *more, env={"PCX_API_KEY": server.readonly_api_key})
    assert ran.code == 3
    assert "stopped: the API credential is not allowed to do this (403)" in ran.stdout
    # The read before sending finds the users already inactive: those are not sent.
    already = sum(u["status"] == "inactive" for u in seed_users(30, 2))
    expected = {"not_attempted": 30 - already, "unchanged": already}
    assert Counter(r["outcome"] for r in ran.results()) == {k: v for k, v in expected.items() if v}
    assert len([r for r in server.sandbox.requests if r.method == "PUT"]) == 1


def test_unusable_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", ["email", "status"], [["a@b.c", "active"]])
    ran = pcxbatch("run", path, "--sandbox", "--report-dir", tmp_path / "out")
    assert ran.code == 2
    assert "in.csv" in ran.stderr and "Traceback" not in ran.stderr
    assert not list((tmp_path / "out").glob("*/results.csv"))


def undo_of(ran: Any) -> list[dict[str, str]]:
    with (ran.run_dir / "undo.csv").open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_a_plain_run_lists_its_changes_for_undo_without_guessing(tmp_path: Path) -> None:
    sample = REPO / "jobs" / "sanctions-deactivate.yaml"
    ran = pcxbatch("run", sample, "--sandbox", "--report-dir", tmp_path / "read")
    # It read the users first (cheap: one page), so undo restores the status each one had.
    before = {u["user_id"]: u["status"] for u in seed_users(200, 0)}  # the built-in sandbox's
    applied = [r["user_id"] for r in ran.results() if r["outcome"] == "applied"]
    undo = undo_of(ran)
    assert [r["user_id"] for r in undo] == applied
    assert [r["status"] for r in undo] == [before[uid] for uid in applied]
    # A job that never reads leaves the status empty and says so: never a guessed one.
    blind = tmp_path / "blind.yaml"
    text = sample.read_text().replace("../", f"{REPO}/") + "read_before_send: never\n"
    blind.write_text(text)
    ran = pcxbatch("run", blind, "--sandbox", "--report-dir", tmp_path / "blind")
    applied = [r["user_id"] for r in ran.results() if r["outcome"] == "applied"]
    undo = undo_of(ran)
    assert [r["user_id"] for r in undo] == applied
    assert all(r["status"] == "" and "unknown" in r["undo_note"] for r in undo)
