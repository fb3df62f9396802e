"""The report an auditor gets, end to end: the installed CLI, real sockets, the sandbox.

A run whose sends half fail, then ``--retry-failed`` against a healthy server: the retry's
folder holds one report for the whole input file (its ``results.csv`` and the Rows sheet of its
``results.xlsx``), every row in its final state, each marked with the run that decided it, and a
Summary sheet that names the system, the file and the runs. Both runs read a CSV: every run
writes a workbook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl

from pcxbatch.sandbox.users import seed_users

from .conftest import pcxbatch
from .test_run import write_csv

KEY = "pcx_e2ereport_0123456789abcdef"


def facts(ws: Any) -> dict[str, Any]:
    return {
        label: value
        for label, value, *_ in ws.iter_rows(max_col=3, values_only=True)
        if label is not None and value is not None
    }


def test_a_retry_of_failed_rows_reports_the_whole_file_in_one_workbook(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    flaky = sandbox_factory(users=40, seed=5, api_key=KEY, fail_rate=0.5)
    good = sandbox_factory(users=40, seed=5, api_key=KEY)
    ids = [u["user_id"] for u in seed_users(40, 5) if u["status"] == "active"][:8]
    source = write_csv(tmp_path / "hits.csv", ["User ID", "Case"],
                       [[uid, f"C-{n}"] for n, uid in enumerate([*ids, "bad/id"])])  # fmt: skip
    job = tmp_path / "hits.yaml"
    job.write_text(
        "\n".join([
            "name: hits", f"input: {source}", f"base_url: {flaky.base_url}",
            f"report_dir: {tmp_path / 'reports'}", "action: deactivate", "updated_by: ops",
            "rate: 200", "concurrency: 1", "max_attempts: 1", "max_failure_rate: 1.0",
            "yes: true",
        ]) + "\n"
    )  # fmt: skip
    env = {"PCX_API_KEY": KEY}

    first = pcxbatch("run", job, env=env)
    assert first.code == 5, first.stderr  # some sends failed
    before = {r["row"]: r for r in first.results()}
    assert {r["outcome"] for r in before.values()} == {"applied", "failed", "invalid"}
    assert (first.run_dir / "results.xlsx").is_file()  # a CSV input gets its workbook too

    retried = pcxbatch("run", "--retry-failed", first.run_dir, "--base-url", good.base_url, env=env)
    assert retried.code == 0, retried.stderr  # every row it sent was applied

    rows = retried.results()
    assert [r["row"] for r in rows] == list(before)  # every row of the file, in its order
    for r in rows:
        if before[r["row"]]["outcome"] == "failed":
            assert (r["outcome"], r["earlier_run"]) == ("applied", ""), r
        else:
            assert r["outcome"] == before[r["row"]]["outcome"], r
            assert r["earlier_run"] == first.run_dir.name
            assert r["message"].startswith("earlier run:")
    changed = {
        uid
        for uid in ids
        if "inactive" in (good.sandbox.status_of(uid), flaky.sandbox.status_of(uid))
    }
    assert changed == set(ids)  # each user was deactivated by one run or the other

    summary = json.loads((retried.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["whole_file"]["rows"] == 9
    assert summary["whole_file"]["counts"]["applied"] == 8
    assert summary["whole_file"]["counts"]["invalid"] == 1
    assert summary["results_xlsx"] == {"written": True}

    book = openpyxl.load_workbook(retried.run_dir / "results.xlsx")
    assert book.sheetnames == ["Summary", "Rows"]
    got = facts(book["Summary"])
    assert got["Run"] == retried.run_dir.name
    assert got["What it was"] == f"a retry of the rows run {first.run_dir.name} did not finish"
    assert got["Sent to (base URL)"] == good.base_url
    assert got["Built-in sandbox"] == "no"
    assert got["Input file"] == "hits.csv"
    assert got["Rows of the file"] == 9
    assert got["Exit code"] == 0
    ws = book["Rows"]
    assert [c.value for c in ws[1]][:5] == ["row", "user_id", "outcome", "confirmed", "message"]
    assert [r[0] for r in ws.iter_rows(min_row=2, values_only=True)] == [int(n) for n in before]
    assert ws.column_dimensions["B"].width >= 38  # user IDs (UUIDs) in full
