"""The service on PostgreSQL (``serve --database``): its queue shared by processes, work lost
between a job's move and the queue's insert queued again at start, and ``users``/``serve``
with ``--database``. Needs ``PCXBATCH_TEST_DATABASE`` (``.ci/run`` starts a server); the
flows themselves run on both backends through the ``service`` fixture, and two real
processes are in ``tests/e2e/test_web_processes.py``."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_users_cli import PCXBATCH, users
from web_harness import RecordingSink, bearer, csv_file, some_users, through_approval

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.queue_pg import PgQueue
from pcxbatch.web.server import Service, build
from pcxbatch.web.store import Store


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_run_whose_queueing_was_lost_is_queued_again_at_start(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox,
    events: RecordingSink, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    users_ = some_users(pcx, "active", 4)
    job_id = through_approval(api, service, tokens, csv_file([[u, ""] for u in users_]))
    monkeypatch.setattr(service.worker, "put", lambda *work: None)  # killed before the insert
    approved = api.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
    assert approved.status_code == 202 and service.flow.get(job_id).state == "queued"

    again = build(service.flow.config, events, Store(str(service.flow.config.database)))
    try:
        assert again.worker.wait_idle()
        assert again.flow.get(job_id).state == "finished"
        assert all(pcx.sandbox.status_of(u) == "inactive" for u in users_)
    finally:
        again.worker.stop()
        again.store.close()


def test_two_queues_on_one_database_do_a_keys_work_one_at_a_time_in_order(
    pg_database: str,
) -> None:
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def handler(kind: str, job_id: str) -> None:
        with lock:
            seen.append((kind, job_id, "start"))
        time.sleep(0.05)  # long enough for another process to try the same key meanwhile
        with lock:
            seen.append((kind, job_id, "end"))

    one, two = (PgQueue(pg_database, name=n, stalled_after=3) for n in ("one", "two"))
    for queue in (one, two):
        queue.start(handler)
    try:
        for n in range(6):
            (one if n % 2 else two).put("run-pcx", "run", f"job-{n}")
        one.put("run-pcx", "sweep")
        two.put("run-pcx", "sweep")  # the same work, waiting behind the runs: queued once
        assert one.wait_idle(60)
    finally:
        one.stop()
        two.stop()
    order = [(job or kind, at) for kind, job, at in seen]
    assert order == [(f"job-{n}", at) for n in range(6) for at in ("start", "end")] + [
        ("sweep", "start"), ("sweep", "end"),
    ]  # fmt: skip


def test_users_keep_accounts_in_postgresql_and_a_bad_database_is_one_line(
    tmp_path: Path, pg_database: str
) -> None:
    added = users("add", "vera", "--role", "approver", "--password-stdin", "--data-dir", tmp_path,
                  "--database", pg_database, stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = users("list", "--database", pg_database, "--data-dir", tmp_path)
    assert listed.stdout.startswith("vera\tapprover\tactive"), listed
    assert not (tmp_path / "pcxbatch.db").exists()  # nothing on SQLite

    wrong = users("list", "--database", "mysql://db/pcx", "--data-dir", tmp_path)
    assert wrong.returncode == 2 and "postgresql://" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    away = users("list", "--database", "postgresql://nobody:secret@127.0.0.1:9/pcx",
                 "--data-dir", tmp_path)  # fmt: skip
    assert away.returncode == 2 and "cannot open the --database database" in away.stderr
    assert "Traceback" not in away.stderr and "secret" not in away.stderr


def test_serve_refuses_its_own_sandbox_with_a_shared_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
    got = subprocess.run(
        [str(PCXBATCH), "serve", "--sandbox", "--database", "postgresql://db.invalid/pcx",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert got.returncode == 2 and "pcxbatch sandbox" in got.stderr and "--base-url" in got.stderr
    assert "Traceback" not in got.stderr
