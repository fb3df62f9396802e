"""Preview, plan, apply, undo and drift, end to end against the sandbox over loopback."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pcxbatch.sandbox.users import seed_users

from .conftest import REPO, pcxbatch
from .test_run import write_csv

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def by_status(users: list[dict[str, Any]], status: str, n: int) -> list[str]:
    return [u["user_id"] for u in users if u["status"] == status][:n]


def setup(tmp_path: Path, server: Any, users: list[dict[str, Any]], extra: str = "") -> Path:
    rows = [[u, "inactive"] for u in by_status(users, "active", 6)]
    rows += [[u, "inactive"] for u in by_status(users, "inactive", 2)]
    rows += [[u, "active"] for u in by_status(users, "pending", 1)]
    rows += [[UNKNOWN, "inactive"], ["bad/id", "inactive"], [rows[0][0], "inactive"]]
    path = write_csv(tmp_path / "hits.csv", ["User ID", "Status"], rows)
    job = tmp_path / "review.yaml"
    job.write_text(
        f"input: {path}\nupdated_by: analyst\nreason: review\nbase_url: {server.base_url}\n"
        f"report_dir: {tmp_path / 'reports'}\n{extra}"
    )
    return job


def preview_rows(run_dir: Path) -> tuple[list[list[str]], list[dict[str, str]]]:
    with (run_dir / "preview.csv").open(encoding="utf-8-sig", newline="") as f:
        lines = list(csv.reader(f))
    blank = lines.index([])
    header = lines[blank + 1]
    return lines[:blank], [dict(zip(header, r, strict=True)) for r in lines[blank + 2 :]]


def test_preview_classifies_every_row_and_sends_nothing(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=21)
    users = seed_users(200, 21)
    job = setup(tmp_path, server, users)
    ran = pcxbatch("preview", job, env={"PCX_API_KEY": server.api_key, "PCXBATCH_OPERATOR": "ana"})
    assert ran.code == 1, ran.stderr  # unknown, invalid and duplicate rows
    assert "6 user(s) go from active to inactive" in ran.stdout
    assert "1 user(s) go from pending to active" in ran.stdout
    assert not [r for r in server.sandbox.requests if r.method != "GET"]
    top, rows = preview_rows(ran.run_dir)
    counts = {r[0]: r[1] for r in top[1:] if len(r) == 2}
    assert counts["will_change"] == "7" and counts["unchanged"] == "2"
    assert counts["not_found"] == "1" and counts["invalid"] == "1" and counts["duplicate"] == "1"
    assert [r["preview"] for r in rows] == [
        *["will_change"] * 6,
        "unchanged",
        "unchanged",
        "will_change",
        "not_found",
        "invalid",
        "duplicate",
    ]
    assert rows[0]["current_status"] == "active" and rows[6]["current_status"] == "inactive"
    plan = json.loads((ran.run_dir / "plan.json").read_text())
    assert plan["previewed_by"] == "ana"
    assert plan["input"]["sha256"] and len(plan["hash"]) == 64
    assert len(plan["rows"]) == 12
    assert server.api_key.split("_", 2)[2] not in (ran.run_dir / "plan.json").read_text()


def test_apply_sends_only_the_planned_changes_and_undo_puts_them_back(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=22)
    users = seed_users(200, 22)
    before = {u["user_id"]: u["status"] for u in users}
    job = setup(tmp_path, server, users)
    env = {"PCX_API_KEY": server.api_key}
    preview = pcxbatch("preview", job, "--plan-out", tmp_path / "plan.json", env=env)
    applied = pcxbatch("apply", tmp_path / "plan.json", "--yes", env=env)
    assert applied.code == 1, applied.stderr
    results = applied.results()
    assert Counter(r["outcome"] for r in results) == {
        "applied": 7,
        "unchanged": 2,
        "not_found": 1,
        "invalid": 1,
        "duplicate": 1,
    }
    sent = {r.user_id for r in server.sandbox.requests if r.method == "PUT"}
    will_change = {r["user_id"] for r in results if r["outcome"] == "applied"}
    assert sent == will_change  # nothing for rows already inactive or not found
    assert "not sent" in next(r for r in results if r["outcome"] == "unchanged")["message"]
    assert applied.summary()["previewed_by"] and applied.summary()["plan_hash"]
    assert preview.code == 1

    undo = applied.run_dir / "undo.csv"
    assert undo.is_file()
    undone = pcxbatch(
        "run",
        undo,
        "--yes",
        "--base-url",
        server.base_url,
        "--report-dir",
        tmp_path / "undo-reports",
        env=env,
    )
    assert undone.code == 1  # the 'pending' user cannot be put back, and says so
    note = next(r for r in undone.results() if r["undo_note"])
    assert "cannot be restored" in note["undo_note"] and note["outcome"] == "invalid"
    for uid in will_change - {note["user_id"]}:
        assert server.sandbox.status_of(uid) == before[uid]


def test_apply_refuses_an_altered_plan_or_a_changed_input(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=200, seed=23)
    job = setup(tmp_path, server, seed_users(200, 23))
    env = {"PCX_API_KEY": server.api_key}
    pcxbatch("preview", job, "--plan-out", tmp_path / "plan.json", env=env)
    plan = tmp_path / "plan.json"
    original = plan.read_text()

    plan.write_text(original.replace('"will_change"', '"unchanged"', 1))
    altered = pcxbatch("apply", plan, "--yes", env=env)
    assert altered.code == 2 and "hash does not match" in altered.stderr

    plan.write_text(original)
    hits = tmp_path / "hits.csv"
    hits.write_text(hits.read_text() + "another-user,inactive\r\n")
    changed = pcxbatch("apply", plan, "--yes", env=env)
    assert changed.code == 2 and "has changed since it was previewed" in changed.stderr
    assert not [r for r in server.sandbox.requests if r.method == "PUT"]


def test_a_job_marked_dry_run_can_still_be_previewed(tmp_path: Path) -> None:
    job = tmp_path / "dry.yaml"
    job.write_text(
        f"input: {REPO / 'sample_inputs' / 'sanctions_hits.csv'}\naction: deactivate\n"
        f"updated_by: x\ndry_run: true\nreport_dir: {tmp_path}\n"
    )
    ran = pcxbatch("preview", job, "--sandbox")
    assert ran.code == 1, ran.stderr
    assert "24 user(s) go from active to inactive" in ran.stdout


def test_a_formula_in_the_input_comes_out_neutralised_in_preview_csv(tmp_path: Path) -> None:
    hostile = '=HYPERLINK("http://evil","x")'
    with (REPO / "sample_inputs" / "sanctions_hits.csv").open(encoding="utf-8-sig") as f:
        sample = list(csv.reader(f))
    header = [*sample[0], "@Note"]
    rows = [[*sample[1], hostile], [*sample[2], "+1+1"], ["-not-an-id", "plain"]]
    path = write_csv(tmp_path / "hits.csv", header, rows)
    job = tmp_path / "hostile.yaml"
    job.write_text(f"input: {path}\naction: deactivate\nupdated_by: x\nreport_dir: {tmp_path}\n")

    ran = pcxbatch("preview", job, "--sandbox")
    assert ran.code == 1, ran.stderr  # the last row's user ID is unusable
    with (ran.run_dir / "preview.csv").open(encoding="utf-8-sig", newline="") as f:
        cells = [cell for line in csv.reader(f) for cell in line]
    assert "'" + hostile in cells and "'+1+1" in cells and "'@Note" in cells
    assert "'-not-an-id" in cells
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
