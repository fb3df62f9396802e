"""The JSON API end to end: the service over a real loopback sandbox, every step and refusal."""

from __future__ import annotations

import csv
import io

from starlette.testclient import TestClient
from web_harness import bearer, csv_file, some_users, through_approval, upload

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.server import Service


def test_the_whole_flow_deactivates_the_users_and_offers_every_report(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox, events: object
) -> None:
    active = some_users(pcx, "active", 3)
    body = csv_file([[u, ""] for u in active] + [["not a user id!", ""], [active[0], ""]])
    created = upload(api, tokens["ana"], body)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] == "validated"
    assert job["counts"] == {"ready": 3, "invalid": 1, "duplicate": 1}

    job_id = through_approval(api, service, tokens, body)
    seen = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["vera"])).json()
    assert seen["state"] == "awaiting_approval"
    assert seen["counts"]["will_change"] == 3 and seen["counts"]["invalid"] == 1
    assert seen["submitted_by"] == "ana" and len(seen["plan_sha256"]) == 64

    approved = api.post(
        f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]), data={"reason": "ok"}
    )
    assert approved.status_code == 202, approved.text
    assert service.worker.wait_idle()
    done = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["ana"])).json()
    assert done["state"] == "finished", done
    assert done["approved_by"] == "vera"
    assert done["counts"]["applied"] == 3
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in active)
    assert set(done["files"]) >= {"results.csv", "results.xlsx", "summary.json", "undo.csv",
                                  "preview.csv", "preview.xlsx", "plan.json"}  # fmt: skip

    got = api.get(f"/api/v1/jobs/{job_id}/files/results.csv", headers=bearer(tokens["ana"]))
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert [r["outcome"] for r in rows] == ["applied"] * 3 + ["invalid", "duplicate"]
    assert [r["row"] for r in rows] == ["2", "3", "4", "5", "6"]
    summary = api.get(f"/api/v1/jobs/{job_id}/files/summary.json", headers=bearer(tokens["ana"]))
    assert summary.json()["people_signed_in"] is True  # the report says: accounts, not names
    assert summary.json()["applied_by"] == "vera" and summary.json()["previewed_by"] == "ana"


def test_updated_by_is_the_signed_in_account_whatever_the_file_says(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    active = some_users(pcx, "active", 2)
    body = csv_file([[u, "mallory"] for u in active], header=("User ID", "Updated By"))
    created = upload(api, tokens["ana"], body)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    api.post(f"/api/v1/jobs/{job_id}/preview", headers=bearer(tokens["ana"]))
    assert service.worker.wait_idle()
    api.post(f"/api/v1/jobs/{job_id}/submit", headers=bearer(tokens["ana"]))
    approved = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
    assert approved.status_code == 202, approved.text
    assert service.worker.wait_idle()
    sent = [r.body for r in pcx.sandbox.requests if r.method == "PUT" and r.user_id in active]
    assert len(sent) == 2 and all(b and b["updated_by"] == "ana" for b in sent)


def test_a_plan_too_old_is_refused_at_approval_and_nothing_is_sent(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    from datetime import UTC, datetime, timedelta

    active = some_users(pcx, "active", 2)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in active]))
    service.flow.clock = lambda: datetime.now(UTC) + timedelta(hours=25)  # a day passed
    approved = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
    assert approved.status_code == 409 and "older than 24 hours" in approved.json()["error"]
    assert service.worker.wait_idle()
    assert all(pcx.sandbox.status_of(u) == "active" for u in active)
    still = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["ana"])).json()
    assert still["state"] == "awaiting_approval"
