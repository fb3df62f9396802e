"""Every refusal of the JSON API: 400, 401, 403, 404, 409 and 413, each with one clear line."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from web_harness import RecordingSink, bearer, csv_file, some_users, through_approval, upload

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.server import Service


def test_an_unusable_file_is_400_with_the_clis_own_message(
    api: TestClient, tokens: dict[str, str]
) -> None:
    got = upload(api, tokens["ana"], csv_file([["x"]], header=("Name", "Reason")), "list.csv")
    assert got.status_code == 400
    error = got.json()["error"]
    assert "no user ID column" in error or "user" in error.lower()
    assert "upload-" not in error  # the server's own file name never shows


def test_an_old_excel_file_is_refused_naming_the_format(
    api: TestClient, tokens: dict[str, str]
) -> None:
    got = upload(api, tokens["ana"], b"\xd0\xcf\x11\xe0 not really", "cases.xls")
    assert got.status_code == 400 and "cases.xls" in got.json()["error"]


def test_no_file_and_an_unknown_template_are_400(
    api: TestClient, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    nothing = api.post("/api/v1/jobs", headers=bearer(tokens["ana"]), data={"action": "x"})
    assert nothing.status_code == 400
    body = csv_file([[some_users(pcx)[0], ""]])
    bad = upload(api, tokens["ana"], body, template="../../etc/passwd")
    assert bad.status_code == 400 and "template" in bad.json()["error"]


def test_a_file_over_the_limit_is_413_and_nothing_is_kept(
    api: TestClient, tokens: dict[str, str], service: Service
) -> None:
    limit = service.flow.config.max_bytes
    headers = {**bearer(tokens["ana"]), "Content-Type": "multipart/form-data; boundary=x"}
    headers["Content-Length"] = str(limit + 10_000_000)
    declared = api.post("/api/v1/jobs", headers=headers, content=b"--x--\r\n")
    assert declared.status_code == 413
    uploads = service.flow.config.data_dir / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_a_file_that_grows_past_the_limit_while_streaming_is_413(
    api: TestClient, tokens: dict[str, str], service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = type(service.flow.config)(**{**service.flow.config.__dict__, "max_bytes": 1000})
    monkeypatch.setattr(service.flow, "config", small)
    got = upload(api, tokens["ana"], b"User ID\n" + b"a" * 5000, "big.csv")
    assert got.status_code == 413
    assert not list((small.data_dir / "uploads").iterdir())


def test_no_token_a_wrong_one_or_a_revoked_one_is_401(
    api: TestClient, tokens: dict[str, str], service: Service
) -> None:
    assert api.get("/api/v1/jobs").status_code == 401
    assert api.get("/api/v1/jobs", headers=bearer("pcxw_nope")).status_code == 401
    service.store.revoke_tokens("ana")
    refused = api.get("/api/v1/jobs", headers=bearer(tokens["ana"]))
    assert refused.status_code == 401 and "token" in refused.json()["error"]


def test_unknown_ids_and_files_are_404(api: TestClient, tokens: dict[str, str]) -> None:
    me = bearer(tokens["vera"])
    assert api.get("/api/v1/jobs/nope", headers=me).status_code == 404
    assert api.post("/api/v1/jobs/nope/approve", headers=me).status_code == 404
    assert api.get("/api/v1/jobs/nope/files/results.csv", headers=me).status_code == 404
    assert api.get("/api/v1/nothing-here", headers=me).json() == {"error": "no such page"}


def test_four_eyes_the_submitter_and_roles_that_may_not_approve_are_403(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink,
) -> None:  # fmt: skip
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in some_users(pcx)]))
    for who in ("ana", "bob", "adam"):  # the submitter; another analyst; an admin
        got = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens[who]))
        assert got.status_code == 403, who
    assert events.names().count("access.refused") == 3
    state = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["ana"])).json()["state"]
    assert state == "awaiting_approval"


def test_an_approver_who_made_the_plan_may_not_approve_it(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink,
) -> None:  # fmt: skip
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in some_users(pcx)]))
    service.store.note(job_id, "2026-01-01T00:00:00", previewed_by="vera")
    got = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
    assert got.status_code == 403 and "different approver" in got.json()["error"]
    assert events.events[-1]["event"] == "approve.refused"
    assert events.events[-1]["actor"] == {
        "account": "vera",
        "role": "approver",
        "origin": "testclient",
    }


def test_requests_that_do_not_fit_the_state_are_409_naming_it(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in some_users(pcx)]))
    vera, ana = bearer(tokens["vera"]), bearer(tokens["ana"])
    assert api.post(f"/api/v1/jobs/{job_id}/submit", headers=ana).status_code == 409
    assert api.post(f"/api/v1/jobs/{job_id}/approve", headers=vera).status_code == 202
    assert service.worker.wait_idle()
    twice = api.post(f"/api/v1/jobs/{job_id}/approve", headers=vera)
    assert twice.status_code == 409 and "finished" in twice.json()["error"]
    again = api.post(f"/api/v1/jobs/{job_id}/preview", headers=ana)
    assert again.status_code == 409 and "finished" in again.json()["error"]
    assert api.post(f"/api/v1/jobs/{job_id}/cancel", headers=ana).status_code == 409
    assert (
        api.post(f"/api/v1/jobs/{job_id}/resume", headers=bearer(tokens["walt"])).status_code == 409
    )


def test_a_rejected_plan_never_runs(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    users = some_users(pcx, "active")
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    path = f"/api/v1/jobs/{job_id}"
    assert api.post(f"{path}/reject", headers=bearer(tokens["vera"])).status_code == 400
    rejected = api.post(
        f"{path}/reject", headers=bearer(tokens["vera"]), data={"reason": "wrong list"}
    )
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    late = api.post(f"{path}/approve", headers=bearer(tokens["walt"]))
    assert late.status_code == 409 and "rejected" in late.json()["error"]
    assert all(pcx.sandbox.status_of(u) == "active" for u in users)


def test_no_response_carries_a_secret(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in some_users(pcx)]))
    text = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["ana"])).text
    text += api.get("/api/v1/jobs", headers=bearer(tokens["ana"])).text
    assert pcx.api_key not in text and tokens["ana"] not in text
    assert "argon2" not in text and str(service.flow.config.data_dir) not in text
