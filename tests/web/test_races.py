"""Requests racing each other (threads against the in-process app): no lost or doubled run."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import func, select
from starlette.testclient import TestClient
from web_harness import bearer, csv_file, some_users, through_approval

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import steps
from pcxbatch.web.server import Service
from pcxbatch.web.store import approvals, runs


def _at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run ``calls`` in threads released together; their answers, in order."""
    barrier = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def _client(service: Service) -> TestClient:
    return TestClient(service.app, base_url="http://127.0.0.1")  # one per thread


def _count(service: Service, table: Any, job_id: str) -> int:
    with service.store.engine.connect() as db:
        return int(db.execute(select(func.count()).where(table.c.job_id == job_id)).scalar_one())


def _post(service: Service, path: str, token: str) -> Callable[[], httpx.Response]:
    return lambda: _client(service).post(path, headers=bearer(token))


def _puts(pcx: RunningSandbox) -> Counter[str]:
    return Counter(r.user_id for r in pcx.sandbox.requests if r.method == "PUT" and r.user_id)


def test_two_uploads_at_once_make_two_jobs(
    service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    first, second = some_users(pcx, n=3), some_users(pcx, n=5)

    def send(users: list[str], token: str) -> Callable[[], httpx.Response]:
        body = csv_file([[u, ""] for u in users])
        return lambda: _client(service).post(
            "/api/v1/jobs", headers=bearer(token), files={"file": ("cases.csv", body)},
            data={"action": "deactivate"},
        )  # fmt: skip

    a, b = _at_once(send(first, tokens["ana"]), send(second, tokens["bob"]))
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    assert a.json()["counts"]["ready"] == 3 and b.json()["counts"]["ready"] == 5
    paths = {service.flow.get(r.json()["id"]).get("input_path") for r in (a, b)}
    assert len(paths) == 2


def test_a_second_approval_racing_the_first_loses(
    service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    users = some_users(pcx, "active", 6)
    job_id = through_approval(_client(service), service, tokens, csv_file([[u, ""] for u in users]))

    def approve(token: str) -> Callable[[], httpx.Response]:
        return lambda: _client(service).post(
            f"/api/v1/jobs/{job_id}/approve", headers=bearer(token)
        )

    answers = _at_once(approve(tokens["vera"]), approve(tokens["walt"]))
    assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
    assert service.worker.wait_idle()
    assert _count(service, approvals, job_id) == 1 and _count(service, runs, job_id) == 1
    assert service.flow.get(job_id).state == "finished"
    assert _puts(pcx) == Counter(users)  # each user sent once


def test_an_approval_racing_a_cancel_ends_in_one_run_or_none(
    service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    active = some_users(pcx, "active", 40)
    for round_ in range(4):
        users = active[round_ * 10 : round_ * 10 + 10]
        client = _client(service)
        job_id = through_approval(client, service, tokens, csv_file([[u, ""] for u in users]))
        url = f"/api/v1/jobs/{job_id}"
        approve, cancel = _at_once(_post(service, f"{url}/approve", tokens["vera"]),
                                   _post(service, f"{url}/cancel", tokens["walt"]))  # fmt: skip
        assert approve.status_code == 202, approve.text
        assert cancel.status_code in (202, 409), cancel.text
        assert service.worker.wait_idle()
        job = service.flow.get(job_id)
        assert job.state in ("finished", "stopped")
        assert _count(service, runs, job_id) <= 1
        if job.state == "stopped":  # cancelled in time: another approver finishes it
            assert client.post(f"{url}/resume", headers=bearer(tokens["walt"])).status_code == 202
            assert service.worker.wait_idle()
            assert service.flow.get(job_id).state == "finished"
        assert all(pcx.sandbox.status_of(u) == "inactive" for u in users)
    assert max(_puts(pcx).values()) == 1  # no user sent twice, in any round


def test_a_cancel_during_a_preview_is_refused_and_the_preview_ends(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    job_id = api.post(
        "/api/v1/jobs", headers=bearer(tokens["ana"]),
        files={"file": ("c.csv", csv_file([[u, ""] for u in some_users(pcx)]))},
        data={"action": "deactivate"},
    ).json()["id"]  # fmt: skip
    held: list[tuple[str, str]] = []
    put = service.worker.put
    service.worker.put = lambda key, kind, job_id="": held.append((kind, job_id))  # type: ignore[method-assign]
    assert (
        api.post(f"/api/v1/jobs/{job_id}/preview", headers=bearer(tokens["ana"])).status_code == 202
    )
    got = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(tokens["ana"]))
    assert got.status_code == 409 and "previewing" in got.json()["error"]
    service.worker.put = put  # type: ignore[method-assign]
    for kind, held_id in held:
        steps.perform(service.flow, kind, held_id)
    assert service.flow.get(job_id).state == "previewed"
