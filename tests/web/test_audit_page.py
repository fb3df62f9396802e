"""The admins' audit page: filters and paging on the server, evidence packs, signed plans."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from web_harness import Audited, bearer, csv_file, sign_in, some_users, through_approval

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import records

PCXBATCH = Path(sys.executable).parent / "pcxbatch"


def _finished(audited: Audited, pcx: RunningSandbox, n: int = 3) -> str:
    client, service, tokens = audited.client, audited.service, audited.tokens
    job_id = through_approval(client, service, tokens, csv_file([[u, ""] for u in
                              some_users(pcx, "active", n)]))  # fmt: skip
    assert client.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).is_success
    assert service.worker.wait_idle()
    return job_id


def _entries(data: Path) -> list[dict[str, Any]]:
    lines = (data / "reports" / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["body"] for line in lines]


def test_the_audit_page_filters_by_account_job_and_date_on_the_server(
    audited: Audited, pcx: RunningSandbox
) -> None:
    first = _finished(audited, pcx)
    second = audited.client.post(
        "/api/v1/jobs", headers=bearer(audited.tokens["bob"]),
        files={"file": ("other.csv", csv_file([["u-1", ""]]))}, data={"action": "deactivate"},
    ).json()["id"]  # fmt: skip
    client = audited.client
    sign_in(client, "adam")
    whole = client.get("/audit").text
    assert first in whole and second in whole and "Evidence pack" in whole
    by_job = client.get(f"/audit?job={second}").text
    assert f'<a href="/audit?job={second}">{second}</a>' in by_job
    assert f'<a href="/audit?job={first}">' not in by_job
    by_bob = client.get("/audit?account=bob").text
    assert "<td>bob" in by_bob and "<td>vera" not in by_bob
    assert "No entries match." in client.get("/audit?to=2000-01-01").text
    assert "<td>vera" in client.get("/audit?from=2000-01-01&account=vera").text
    refused = client.get("/audit?from=yesterday")
    assert refused.status_code == 400 and "YYYY-MM-DD" in refused.text


def test_the_audit_page_is_paged_newest_first(
    audited: Audited, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "PER_PAGE", 3)
    client = audited.client
    for _ in range(4):
        sign_in(client, "adam")  # each sign-in is an entry
    found = records.entries(audited.service.flow, records.Filters(account="adam"))
    assert found.total >= 4 and len(found.rows) == 3
    assert [r["seq"] for r in found.rows] == sorted((r["seq"] for r in found.rows), reverse=True)
    page = client.get("/audit?account=adam").text
    assert "Older" in page and "Newer" not in page
    assert "Newer" in client.get("/audit?account=adam&page=2").text


def test_a_finished_job_offers_its_evidence_pack_and_it_verifies(
    audited: Audited, pcx: RunningSandbox, tmp_path: Path
) -> None:
    job_id = _finished(audited, pcx)
    client = audited.client
    sign_in(client, "adam")
    got = client.get(f"/audit/jobs/{job_id}/evidence.zip")
    assert got.status_code == 200, got.text
    assert f'filename="evidence-{job_id}.zip"' in got.headers["content-disposition"]
    pack = tmp_path / "evidence.zip"
    pack.write_bytes(got.content)
    assert "results.xlsx" in " ".join(zipfile.ZipFile(pack).namelist())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
    verified = subprocess.run([str(PCXBATCH), "audit", "verify", str(pack)], capture_output=True,
                              text=True, env=env, timeout=120)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    entries = _entries(audited.service.flow.config.data_dir)
    said = [(e["event"], e.get("actor", {}).get("account")) for e in entries]
    assert ("export", "adam") in said and ("download", "adam") in said
    sign_in(client, "ana")
    assert client.get(f"/audit/jobs/{job_id}/evidence.zip").status_code == 403


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl checks the signature")
def test_the_signed_plan_checks_with_openssl_against_the_audit_key(
    audited: Audited, pcx: RunningSandbox, tmp_path: Path
) -> None:
    job_id = _finished(audited, pcx)
    client = audited.client
    sign_in(client, "adam")
    got = client.get(f"/audit/jobs/{job_id}/plan-signed.zip")
    assert got.status_code == 200, got.text
    zipfile.ZipFile(io.BytesIO(got.content)).extractall(tmp_path)
    plan = audited.service.flow.get(job_id).get("plan_path")
    assert (tmp_path / "plan.json").read_bytes() == Path(plan).read_bytes()
    how = (tmp_path / "HOW-TO-CHECK.txt").read_text(encoding="utf-8")
    check = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "audit-key.pem", "-rawin",
             "-in", "plan.json", "-sigfile", "plan.json.sig"]  # fmt: skip
    assert " ".join(check) in how
    ok = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
    key = subprocess.run([str(PCXBATCH), "audit", "key", str(audited.service.flow.config.reports)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    fingerprint = next(w for w in key.stdout.split() if w.startswith("sha256:"))
    assert fingerprint.removeprefix("sha256:") in how
    (tmp_path / "plan.json").write_bytes(b" " + (tmp_path / "plan.json").read_bytes())
    bad = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0  # one byte changed: the signature no longer holds
