"""The audit trail as a user meets it: runs and previews on record, ``audit verify`` finding a
changed journal row or report file, ``audit head``/``key`` to keep outside, and an evidence
pack checked on a machine that has nothing else of the installation."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.sandbox.users import seed_users

from .conftest import Ran, pcxbatch
from .test_preview import setup


def entries(reports: Path) -> list[dict[str, Any]]:
    lines = (reports / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["body"] for line in lines]


def events(reports: Path) -> list[str]:
    return [e["event"] for e in entries(reports)]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A preview by ana and its apply by bo against the sandbox; the report folder is copied
    by each test that tampers with it."""
    from pcxbatch.sandbox import SandboxConfig, start

    tmp_path = tmp_path_factory.mktemp("audit")
    server = start(SandboxConfig(users=200, seed=31))
    try:
        job = setup(tmp_path, server, seed_users(200, 31))
        key = {"PCX_API_KEY": server.api_key}
        plan = tmp_path / "reports" / "plan.json"
        preview = pcxbatch(
            "preview", job, "--plan-out", plan, env={**key, "PCXBATCH_OPERATOR": "ana"}
        )
        assert preview.code == 1, preview.stderr
        run = pcxbatch("apply", plan, "--yes", env={**key, "PCXBATCH_OPERATOR": "bo"})
        assert run.code == 1, run.stderr
    finally:
        server.stop()
    return {"reports": tmp_path / "reports", "run_dir": run.run_dir, "plan": plan}


def copy(applied: dict[str, Any], tmp_path: Path) -> tuple[Path, Path]:
    reports = tmp_path / "reports"
    shutil.copytree(applied["reports"], reports)
    return reports, reports / applied["run_dir"].name


def verify(*args: str | Path) -> Ran:
    return pcxbatch("audit", "verify", *args)


def test_a_preview_and_its_apply_are_on_record_with_who_what_and_the_digests(
    applied: dict[str, Any],
) -> None:
    reports, run_dir = applied["reports"], applied["run_dir"]
    assert events(reports)[:5] == ["preview", "checkpoint", "run.start", "run.finish", "checkpoint"]
    preview, start, finish = (e for e in entries(reports) if e["event"] != "checkpoint")
    plan_hash = json.loads(applied["plan"].read_text())["hash"]
    assert preview["actor"]["operator"] == "ana" and preview["actor"]["unix_user"]
    assert preview["objects"]["plan"] == plan_hash == start["objects"]["plan"]
    assert start["actor"]["operator"] == "bo" and start["details"]["kind"] == "apply"
    assert start["details"]["previewed_by"] == "ana" and start["objects"]["run"] == run_dir.name
    assert start["details"]["to_send"] == {"deactivate": 6, "set_status": 1}
    assert finish["details"]["exit_code"] == 1
    assert finish["details"]["counts"]["applied"] == 7
    assert set(finish["files"]) == {
        f"{run_dir.name}/{name}"
        for name in ("results.csv", "results.xlsx", "summary.json", "undo.csv")
    }
    assert finish["journal"]["rows"] == 12
    assert "plan.json" in preview["files"]


def test_an_untouched_folder_verifies_against_the_head_and_key_kept_outside(
    applied: dict[str, Any], tmp_path: Path
) -> None:
    reports, _ = copy(applied, tmp_path)
    head = pcxbatch("audit", "head", reports)
    assert head.code == 0, head.stderr
    kept_head = head.stdout.strip()
    assert "keep both outside" in head.stderr
    key = pcxbatch("audit", "key", reports)
    kept_key = key.stdout.split("fingerprint: ")[1].strip()
    ran = verify(reports, "--head", kept_head, "--key", kept_key)
    assert ran.code == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith("verified: ") and "7 report file(s) and 2 journal(s)" in ran.stdout


def test_an_edited_journal_row_is_found_and_its_run_named(
    applied: dict[str, Any], tmp_path: Path
) -> None:
    reports, run_dir = copy(applied, tmp_path)
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        db.execute("UPDATE rows SET outcome = 'applied' WHERE outcome = 'not_found'")
    ran = verify(reports)
    assert ran.code == 7
    assert f"{run_dir.name}: the journal's rows are not those entry" in ran.stdout


def test_a_replaced_report_file_is_found_and_named(applied: dict[str, Any], tmp_path: Path) -> None:
    reports, run_dir = copy(applied, tmp_path)
    results = run_dir / "results.csv"
    results.write_text(results.read_text(encoding="utf-8-sig").replace("failed", "applied"))
    (run_dir / "undo.csv").unlink()
    ran = verify(reports)
    assert ran.code == 7
    assert f"{run_dir.name}/results.csv: not the file entry" in ran.stdout
    assert f"{run_dir.name}/undo.csv: entry" in ran.stdout and "it is gone" in ran.stdout


def test_a_cut_log_is_found_against_the_head(applied: dict[str, Any], tmp_path: Path) -> None:
    reports, _ = copy(applied, tmp_path)
    kept = pcxbatch("audit", "head", reports).stdout.strip()
    log = reports / "audit.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:2]))
    assert verify(reports).code == 0  # nothing inside the cut log can tell...
    ran = verify(reports, "--head", kept)  # ...the head kept outside can
    assert ran.code == 7 and "were cut off" in ran.stdout


def test_the_evidence_pack_verifies_alone_and_a_changed_pack_does_not(
    applied: dict[str, Any], tmp_path: Path
) -> None:
    reports, run_dir = copy(applied, tmp_path)
    kept_key = pcxbatch("audit", "key", reports).stdout.split("fingerprint: ")[1].strip()
    pack = tmp_path / "pack.zip"
    made = pcxbatch("audit", "export", run_dir, "--out", pack, "--with-input")
    assert made.code == 0, made.stderr
    with zipfile.ZipFile(pack) as zf:
        names = set(zf.namelist())
        howto = zf.read("HOW-TO-VERIFY.txt").decode()
        sealed = [json.loads(line) for line in zf.read("audit-entries.jsonl").splitlines()]
    assert f"files/{run_dir.name}/results.xlsx" in names and "files/plan.json" in names
    assert "input/hits.csv" in names and kept_key in howto
    assert all(("body" in e) != ("body_sha256" in e) for e in sealed)
    # Another machine: only the pack, in an empty folder.
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    shutil.move(pack, elsewhere / "pack.zip")
    shutil.rmtree(reports)
    ran = pcxbatch("audit", "verify", "pack.zip", "--key", kept_key, cwd=elsewhere)
    assert ran.code == 0, ran.stdout + ran.stderr
    wrong = pcxbatch("audit", "verify", "pack.zip", "--key", "sha256:" + "0" * 64, cwd=elsewhere)
    assert wrong.code == 7 and "re-signed" in wrong.stdout
    changed = elsewhere / "changed.zip"
    with zipfile.ZipFile(elsewhere / "pack.zip") as src, zipfile.ZipFile(changed, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("results.csv"):
                data = data.replace(b"applied", b"failed")
            dst.writestr(item, data)
    ran = pcxbatch("audit", "verify", "changed.zip", "--key", kept_key, cwd=elsewhere)
    assert ran.code == 7 and "results.csv: not the file entry" in ran.stdout


def test_a_pack_of_a_changed_run_is_refused(applied: dict[str, Any], tmp_path: Path) -> None:
    _reports, run_dir = copy(applied, tmp_path)
    (run_dir / "summary.json").write_text("{}")
    ran = pcxbatch("audit", "export", run_dir, "--out", tmp_path / "p.zip")
    assert ran.code == 2 and "not the file its audit entry recorded" in ran.stderr
    assert not (tmp_path / "p.zip").exists()


def test_verify_without_a_log_says_so(tmp_path: Path) -> None:
    ran = verify(tmp_path)
    assert ran.code == 2 and "no audit log here" in ran.stderr
