"""The whole flow in a real browser (Playwright driving Debian's chromium), as two people do it.

An analyst signs in, uploads an .xlsx with bad rows, reads the problems, previews, submits, is
refused approving her own plan, and signs out; an approver signs in, approves, watches the run
finish and downloads results.xlsx, whose rows agree with the sandbox's final state. Each page
is photographed (``PCXBATCH_SCREENSHOTS`` names the folder; a temporary one by default).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_harness import (
    PASSWORD,
    Audited,
    bearer,
    csv_file,
    serving,
    some_users,
    through_approval,
    xlsx_file,
)

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.server import Service

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
    reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api", reason="pip's playwright is missing")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PCXBATCH_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sign_in(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("h1:has-text('Jobs')")


def test_analyst_uploads_previews_submits_and_approver_runs_it(
    browser: Any, service: Service, pcx: RunningSandbox, tmp_path: Path, shots: Path
) -> None:
    active = some_users(pcx, "active", 5)
    rows = [[u, ""] for u in active] + [["12 34", ""], [active[1], ""]]
    book = tmp_path / "sanctions-hits.xlsx"
    book.write_bytes(xlsx_file(rows))
    with serving(service.app) as url:
        analyst = browser.new_page(viewport={"width": 1100, "height": 900})
        analyst.goto(f"{url}/jobs")
        analyst.screenshot(path=shots / "01-sign-in.png", full_page=True)
        _sign_in(analyst, url, "ana")
        analyst.screenshot(path=shots / "02-jobs-upload.png", full_page=True)
        analyst.set_input_files("input[name=file]", str(book))
        analyst.select_option("select[name=action]", "deactivate")
        analyst.fill("input[name=reason]", "Sanctions screening match")
        analyst.click("button:has-text('Upload and check')")
        analyst.wait_for_selector("h2:has-text('Rows that cannot be used')")
        analyst.screenshot(path=shots / "03-validation.png", full_page=True)
        problems = analyst.inner_text("section:has(h2:has-text('Rows that cannot be used'))")
        assert "7\tinvalid" in problems and "8\tduplicate" in problems  # the spreadsheet's rows

        analyst.click("button:has-text('Preview against PCX')")
        analyst.wait_for_selector("button:has-text('Submit for approval')", timeout=60_000)
        analyst.screenshot(path=shots / "04-preview.png", full_page=True)
        assert "What the plan changes" in analyst.content()
        analyst.click("button:has-text('Submit for approval')")
        analyst.wait_for_selector(".state.awaiting_approval")
        job_path = analyst.url.removeprefix(url)
        assert "Approve" not in analyst.inner_text("main")
        token = analyst.get_attribute("input[name=csrf]", "value")
        own = analyst.request.post(f"{url}{job_path}/approve", form={"csrf": token})
        assert own.status == 403  # the submitter's own approval is refused
        analyst.click("button:has-text('Sign out')")
        analyst.wait_for_selector("h1:has-text('Sign in')")

        approver = browser.new_page(viewport={"width": 1100, "height": 900})
        _sign_in(approver, url, "vera")
        approver.goto(f"{url}{job_path}")
        approver.screenshot(path=shots / "05-approval.png", full_page=True)
        assert "Plan SHA-256" in approver.inner_text("main")
        approver.fill("form[action$='/approve'] input[name=reason]", "Checked against case list")
        approver.click("button:has-text('Approve and run')")
        approver.wait_for_selector(".state.finished", timeout=60_000)
        approver.screenshot(path=shots / "06-results.png", full_page=True)
        with approver.expect_download() as download:
            approver.click("a:has-text('results.xlsx')")
        saved = tmp_path / "results.xlsx"
        download.value.save_as(saved)
        approver.goto(f"{url}/accounts")
        approver.screenshot(path=shots / "07-accounts-refused.png", full_page=True)
    _check_results(saved, pcx, active)


def _check_results(saved: Path, pcx: RunningSandbox, active: list[str]) -> None:
    from openpyxl import load_workbook

    sheet = load_workbook(saved, read_only=True)["Rows"]
    lines = list(sheet.iter_rows(values_only=True))
    header = [str(h) for h in lines[0]]
    at = {name: header.index(name) for name in ("row", "user_id", "outcome")}
    found = [{k: str(line[i]) for k, i in at.items()} for line in lines[1:] if line[0] is not None]
    applied = [r["user_id"] for r in found if r["outcome"] == "applied"]
    assert sorted(applied) == sorted(active)
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in applied)
    assert {r["row"]: r["outcome"] for r in found if r["outcome"] != "applied"} == {
        "7": "invalid", "8": "duplicate",
    }  # fmt: skip


def test_undo_from_the_results_page_and_the_audit_page(
    browser: Any, audited: Audited, pcx: RunningSandbox, shots: Path
) -> None:
    client, tokens = audited.client, audited.tokens
    users = some_users(pcx, "active", 3)
    job_id = through_approval(client, audited.service, tokens,
                              csv_file([[u, ""] for u in [*users, "no-such-user"]]))  # fmt: skip
    assert client.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).is_success
    assert audited.service.worker.wait_idle()
    with serving(audited.service.app) as url:
        analyst = browser.new_page(viewport={"width": 1100, "height": 900})
        _sign_in(analyst, url, "ana")
        analyst.goto(f"{url}/jobs/{job_id}")
        analyst.screenshot(path=shots / "08-results-undo.png", full_page=True)
        analyst.click("button:has-text('Undo this run')")
        analyst.wait_for_selector("text=It needs its own approval.")
        analyst.screenshot(path=shots / "09-undo-job.png", full_page=True)
        assert "3" in analyst.inner_text("table.counts")
        admin = browser.new_page(viewport={"width": 1100, "height": 900})
        _sign_in(admin, url, "adam")
        admin.click("a:has-text('Audit log')")
        admin.wait_for_selector("h1:has-text('Audit log')")
        admin.screenshot(path=shots / "10-audit.png", full_page=True)
        admin.fill("input[name=account]", "vera")
        admin.click("button:has-text('Show')")
        admin.wait_for_selector("a:has-text('Clear')")
        admin.screenshot(path=shots / "11-audit-filtered.png", full_page=True)
        accounts = {
            c.strip().split()[0]
            for c in admin.locator("table.audit tbody td:nth-child(4)").all_inner_texts()
        }
        assert accounts == {"vera"}
        with admin.expect_download() as download:
            admin.click(f"tr:has(a:has-text('{job_id}')) a:has-text('Evidence pack')")
        assert download.value.suggested_filename == f"evidence-{job_id}.zip"
