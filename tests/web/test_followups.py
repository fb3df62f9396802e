"""Retry the failed rows, undo a run: each a new job that is previewed and needs an approver."""

from __future__ import annotations

from collections import Counter

import pytest
from starlette.testclient import TestClient
from web_harness import (
    RecordingSink,
    bearer,
    csv_file,
    form_token,
    sign_in,
    some_users,
    through_approval,
)

from pcxbatch.model import RowResult
from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import steps
from pcxbatch.web.events import Who
from pcxbatch.web.server import Service
from pcxbatch.web.worker import WebUI


def _puts(pcx: RunningSandbox) -> Counter[str]:
    return Counter(r.user_id for r in pcx.sandbox.requests if r.method == "PUT" and r.user_id)


def _job(api: TestClient, token: str, job_id: str) -> dict[str, object]:
    got = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(token))
    assert got.status_code == 200, got.text
    body: dict[str, object] = got.json()
    return body


def _preview_submit_approve(api: TestClient, service: Service, tokens: dict[str, str],
                            job_id: str) -> dict[str, object]:  # fmt: skip
    """The new job's way to a run: preview and submit (ana), approve (vera); the job after."""
    assert api.post(f"/api/v1/jobs/{job_id}/preview", headers=bearer(tokens["ana"])).is_success
    assert service.worker.wait_idle()
    assert api.post(f"/api/v1/jobs/{job_id}/submit", headers=bearer(tokens["ana"])).is_success
    own = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
    assert own.status_code == 202, own.text
    assert service.worker.wait_idle()
    return _job(api, tokens["vera"], job_id)


def _finished_run(api: TestClient, service: Service, tokens: dict[str, str],
                  users: list[str]) -> str:  # fmt: skip
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    assert api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).is_success
    assert service.worker.wait_idle()
    assert _job(api, tokens["vera"], job_id)["state"] == "finished"
    return job_id


def test_retry_of_a_cancelled_run_is_a_new_plan_that_needs_an_approver(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    users = some_users(pcx, "active", 20)
    job_id = through_approval(api, service, tokens, csv_file([[u, "case"] for u in users]))
    answered = WebUI.result

    def cancel_after_the_first(ui: WebUI, result: RowResult) -> None:
        answered(ui, result)
        if ui.progress.done == 1:
            steps.cancel(service.flow, Who("vera", "approver", "test"), job_id)

    monkeypatch.setattr(WebUI, "result", cancel_after_the_first)
    assert api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).is_success
    assert service.worker.wait_idle()
    monkeypatch.setattr(WebUI, "result", answered)
    left = _job(api, tokens["ana"], job_id)["counts"]["not_attempted"]  # type: ignore[index]
    assert left > 0

    assert (
        api.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(tokens["vera"])).status_code == 403
    )
    made = api.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(tokens["ana"]))
    assert made.status_code == 201, made.text
    retry = made.json()
    assert retry["state"] == "validated" and retry["counts"]["ready"] == left
    assert retry["follows"] == {"kind": "retry", "job": job_id}
    assert retry["input_name"] == f"retry-of-{job_id}.csv"
    # The stopped run is closed: its unsent rows are the new job's, so it cannot also send them.
    assert _job(api, tokens["ana"], job_id)["state"] == "finished"
    assert (
        api.post(f"/api/v1/jobs/{job_id}/resume", headers=bearer(tokens["walt"])).status_code == 409
    )
    again = api.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(tokens["ana"]))
    assert again.status_code == 409 and retry["id"] in again.json()["error"]
    assert _puts(pcx).total() == len(users) - left  # nothing sent before its approval

    done = _preview_submit_approve(api, service, tokens, retry["id"])
    assert done["state"] == "finished" and done["counts"]["applied"] == left  # type: ignore[index]
    assert done["approved_by"] == "vera" and done["created_by"] == "ana"
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)
    assert max(_puts(pcx).values()) == 1  # no user sent twice across the two jobs
    assert "retry" in events.names()


def test_retry_with_nothing_failed_is_refused_naming_why(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    job_id = _finished_run(api, service, tokens, some_users(pcx, "active", 3))
    got = api.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(tokens["ana"]))
    assert got.status_code == 409
    assert got.json()["error"] == f"job {job_id}'s run has no failed or not_attempted rows to retry"
    fresh = api.post(f"/api/v1/jobs/{job_id}/undo", headers=bearer(tokens["ana"])).json()
    assert (
        api.post(f"/api/v1/jobs/{fresh['id']}/undo", headers=bearer(tokens["ana"])).status_code
        == 409
    )


def test_undo_puts_the_users_back_only_after_its_own_approval(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink,
) -> None:  # fmt: skip
    users = some_users(pcx, "active", 5)
    job_id = _finished_run(api, service, tokens, users)
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)

    made = api.post(f"/api/v1/jobs/{job_id}/undo", headers=bearer(tokens["ana"]))
    assert made.status_code == 201, made.text
    undo = made.json()
    assert undo["counts"] == {"ready": 5, "invalid": 0, "duplicate": 0}
    assert undo["follows"] == {"kind": "undo", "job": job_id}
    assert _job(api, tokens["ana"], job_id)["undo_job"] == undo["id"]
    assert api.post(f"/api/v1/jobs/{job_id}/undo", headers=bearer(tokens["ana"])).status_code == 409
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)  # nothing sent yet

    assert api.post(f"/api/v1/jobs/{undo['id']}/preview", headers=bearer(tokens["ana"])).is_success
    assert service.worker.wait_idle()
    previewed = _job(api, tokens["ana"], undo["id"])
    assert previewed["transitions"] == [["inactive", "active", 5]]
    done = _preview_submit_approve(api, service, tokens, undo["id"])
    assert done["state"] == "finished" and done["counts"]["applied"] == 5  # type: ignore[index]
    assert all(pcx.sandbox.status_of(u) == "active" for u in users)
    assert "undo" in events.names()


def test_the_results_page_offers_retry_and_undo_to_an_analyst(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    job_id = _finished_run(api, service, tokens, [*some_users(pcx, "active", 2), "no-such-user"])
    _status, csrf = sign_in(api, "ana")
    page = api.get(f"/jobs/{job_id}").text
    assert "Undo this run" in page
    assert "Retry the failed rows" not in page  # nothing failed: not_found is not retried
    forged = api.post(f"/jobs/{job_id}/undo", data={"csrf": "forged"})
    assert forged.status_code == 403
    got = api.post(f"/jobs/{job_id}/undo", data={"csrf": form_token(page)}, follow_redirects=False)
    assert got.status_code == 303
    new_page = api.get(got.headers["location"]).text
    assert f'undoes the changes of <a href="/jobs/{job_id}">job {job_id}</a>' in new_page
    assert "Preview against PCX" in new_page
    assert "Undo this run" not in api.get(f"/jobs/{job_id}").text  # done once
    assert csrf


def test_a_retry_that_cannot_be_made_leaves_the_stopped_run_resumable(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from pcxbatch.web.flow import Refused

    users = some_users(pcx, "active", 12)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    answered = WebUI.result

    def cancel_after_the_first(ui: WebUI, result: RowResult) -> None:
        answered(ui, result)
        if ui.progress.done == 1:
            steps.cancel(service.flow, Who("vera", "approver", "test"), job_id)

    monkeypatch.setattr(WebUI, "result", cancel_after_the_first)
    assert api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).is_success
    assert service.worker.wait_idle()
    monkeypatch.setattr(WebUI, "result", answered)

    def refused(*args: object) -> None:
        raise Refused(400, "the disk is full")

    monkeypatch.setattr(service.flow, "create", refused)
    got = api.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(tokens["ana"]))
    assert got.status_code == 400 and got.json()["error"] == "the disk is full"
    assert _job(api, tokens["ana"], job_id)["state"] == "stopped"
    monkeypatch.undo()
    assert api.post(f"/api/v1/jobs/{job_id}/resume", headers=bearer(tokens["walt"])).is_success
    assert service.worker.wait_idle()
    assert _job(api, tokens["ana"], job_id)["state"] == "finished"
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)
