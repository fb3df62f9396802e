"""Runs in the worker: cancel as SIGTERM, resume by another approver, a restart mid-queue."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from web_harness import RecordingSink, bearer, csv_file, some_users, through_approval

from pcxbatch.credentials import Credentials
from pcxbatch.model import RowResult
from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import steps
from pcxbatch.web.events import Who
from pcxbatch.web.server import Service, build
from pcxbatch.web.worker import WebUI


def _puts(pcx: RunningSandbox) -> Counter[str]:
    """How many status changes the sandbox received, per user."""
    return Counter(r.user_id for r in pcx.sandbox.requests if r.method == "PUT" and r.user_id)


def test_cancel_stops_the_run_and_resume_by_another_approver_finishes_it(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    users = some_users(pcx, "active", 30)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    answered = WebUI.result

    def cancel_after_the_first(ui: WebUI, result: RowResult) -> None:
        answered(ui, result)
        if ui.progress.done == 1:  # as a person pressing Cancel while it runs
            steps.cancel(service.flow, Who("ana", "analyst", "test"), job_id)

    monkeypatch.setattr(WebUI, "result", cancel_after_the_first)
    got = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
    assert got.status_code == 202
    assert service.worker.wait_idle()
    stopped = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["vera"])).json()
    assert stopped["state"] == "stopped", stopped
    assert "cancelled by ana" in stopped["stopped"]
    assert stopped["counts"]["not_attempted"] > 0
    assert stopped["counts"]["applied"] + stopped["counts"]["not_attempted"] == len(users)
    assert "run.cancel" in events.names() and "run.stop" in events.names()

    monkeypatch.setattr(WebUI, "result", answered)
    assert (
        api.post(f"/api/v1/jobs/{job_id}/resume", headers=bearer(tokens["ana"])).status_code == 403
    )
    resumed = api.post(f"/api/v1/jobs/{job_id}/resume", headers=bearer(tokens["walt"]))
    assert resumed.status_code == 202, resumed.text
    assert service.worker.wait_idle()
    done = api.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["vera"])).json()
    assert done["state"] == "finished", done
    assert done["counts"]["applied"] == len(users)
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)
    assert max(_puts(pcx).values()) == 1  # no row sent twice


def test_cancel_of_a_queued_run_sends_nothing(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    users = some_users(pcx, "active", 3)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    held: list[tuple[str, str]] = []
    monkeypatch.setattr(
        service.worker, "put", lambda key, kind, job_id="": held.append((kind, job_id))
    )
    assert (
        api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).status_code
        == 202
    )
    cancelled = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(tokens["vera"]))
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "stopped"
    for kind, held_id in held:  # the worker reaches it after all: it finds the job stopped
        steps.perform(service.flow, kind, held_id)
    assert _puts(pcx) == Counter()
    assert all(pcx.sandbox.status_of(u) == "active" for u in users)


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's queue: tests/web/test_queue_pg.py
def test_a_restart_queues_the_interrupted_runs_again_and_they_finish(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    users = some_users(pcx, "active", 4)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    monkeypatch.setattr(service.worker, "put", lambda *work: None)  # the server dies here
    assert (
        api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).status_code
        == 202
    )
    service.store.move(job_id, ("queued",), "running", "2026-01-01T00:00:00")  # as if it had begun

    again = build(service.flow.config, events, service.store)  # the restart
    assert again.worker.wait_idle()
    job = again.store.job(job_id)
    assert job is not None and job.state == "finished", job
    assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)


def test_a_web_run_paces_through_the_keys_shared_store(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Runs of the web service share the key's rate with CLI runs and other service processes:
    their slots come from the same pacing store, under the key's non-secret prefix."""
    store = tmp_path / "pace.sqlite"
    settings = {**service.flow.config.job_settings, "pacing_store": str(store)}
    service.flow.config = replace(service.flow.config, job_settings=settings)
    users = some_users(pcx, "active", 5)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    before = time.time()
    assert (
        api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).status_code
        == 202
    )
    assert service.worker.wait_idle()
    assert service.flow.get(job_id).state == "finished"
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT key, tat FROM pace").fetchall()
    key = Credentials(api_key=pcx.api_key).pacing_key()
    assert [k for k, _ in rows] == [key] and key and pcx.api_key not in key
    assert rows[0][1] > before  # the run's slots were reserved there


def test_a_run_handed_over_while_its_process_still_holds_it_is_left_to_that_process(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A process paused (or cut off from the database) past ``--stalled-after`` looks dead and
    its run is handed to another; the run's lock says it is alive: nothing is sent twice."""
    from pcxbatch import reportdir

    users = some_users(pcx, "active", 4)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users]))
    monkeypatch.setattr(service.worker, "put", lambda *work: None)
    assert (
        api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"])).status_code
        == 202
    )
    flow = service.flow
    flow.store.move(job_id, ("queued",), "running", flow.now(), worker="elsewhere:1")

    with reportdir.lock(flow.config.reports, f"web-{job_id}"):  # that process, still running
        steps.perform(flow, "run", job_id)
    job = flow.get(job_id)
    assert job.state == "running" and job.get("worker") == "elsewhere:1"
    assert _puts(pcx) == Counter()
    assert "run.decline" in events.names()

    steps.perform(flow, "run", job_id)  # it died after all: handed over again, and finished
    assert flow.get(job_id).state == "finished"
    assert _puts(pcx) == Counter(users)
