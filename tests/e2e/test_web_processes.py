"""Two ``pcxbatch serve --database postgresql://...`` processes serving one team (one database,
one data dir): a run approved through one is done by either; the process doing it killed with
SIGKILL, the other takes it over from its journal, sends no row with a recorded outcome again,
and the results agree with the sandbox; a cancel through one process stops a run in the other,
whose progress the first shows while it goes on. Real processes, a real PostgreSQL
(``PCXBATCH_TEST_DATABASE``; ``.ci/run`` starts one), the sandbox on loopback."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .test_cron import puts
from .test_kill import recorded
from .test_web_kill import (
    USERS,
    _approved_job,
    _auth,
    _poll,
    _Server,
    accounts_with_tokens,
    finished_cleanly,
)

STALLED_AFTER = 3  # seconds: the takeover comes within a few of them


@pytest.fixture
def pcx(sandbox_factory: Any) -> Any:
    return sandbox_factory(users=200, seed=6, latency_ms=60)


@pytest.fixture
def tokens(pg_database: str) -> dict[str, str]:
    roles = {"ana": "analyst", "vera": "approver", "walt": "approver"}
    return accounts_with_tokens(pg_database, roles)


@pytest.fixture
def servers(
    tmp_path: Path, pcx: Any, tokens: dict[str, str], pg_database: str
) -> Iterator[tuple[_Server, _Server]]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    extra = ("--database", pg_database, "--stalled-after", str(STALLED_AFTER))
    pair = (
        _Server(data, pcx, tmp_path / "a.log", extra),
        _Server(data, pcx, tmp_path / "b.log", extra),
    )
    for server in pair:
        server.start()
    for server in pair:
        server.wait_ready(tokens["ana"])
    yield pair
    for server in pair:
        server.stop()


def _running(server: _Server, token: str, job_id: str) -> dict[str, Any]:
    """The job once it runs and a quarter of its rows are answered."""
    deadline = time.monotonic() + 30
    while True:
        job = _poll(server, token, job_id, {"running", "finished"})
        if job["state"] == "running" and job["worker"] and job["progress"]["done"] >= USERS // 4:
            return job
        assert job["state"] == "running" and time.monotonic() < deadline, job
        time.sleep(0.05)


def _by_pid(pair: tuple[_Server, _Server], worker: str) -> tuple[_Server, _Server]:
    """The server whose process does the work named ``worker`` (``host:pid``), and the other."""
    pid = int(worker.rsplit(":", 1)[1])
    doing = [s for s in pair if s.proc is not None and s.proc.pid == pid]
    assert len(doing) == 1, (worker, [s.proc.pid for s in pair if s.proc])
    return doing[0], next(s for s in pair if s is not doing[0])


def test_the_other_process_takes_over_a_run_whose_process_was_killed(
    servers: tuple[_Server, _Server], pcx: Any, tokens: dict[str, str]
) -> None:
    users = [u for u, user in pcx.sandbox.users.items() if user["status"] == "active"][:USERS]
    job_id = _approved_job(servers[0], tokens, users)
    job = _running(servers[1], tokens["vera"], job_id)  # seen through either process
    doing, other = _by_pid(servers, job["worker"])
    assert doing.proc is not None
    os.kill(doing.proc.pid, signal.SIGKILL)
    doing.proc.wait(timeout=10)
    done_before = recorded(other.data / "reports")
    sent_before = len(puts(pcx))
    assert 0 < len(done_before) < USERS

    job = _poll(other, tokens["vera"], job_id, {"finished", "stopped"})

    assert other.proc is not None and job["worker"].endswith(f":{other.proc.pid}")
    finished_cleanly(other, pcx, tokens["vera"], job, users, done_before, sent_before)


def test_a_cancel_through_one_process_stops_the_run_in_the_other(
    servers: tuple[_Server, _Server], pcx: Any, tokens: dict[str, str]
) -> None:
    users = [u for u, user in pcx.sandbox.users.items() if user["status"] == "active"][:USERS]
    job_id = _approved_job(servers[0], tokens, users)
    job = _running(servers[0], tokens["vera"], job_id)
    doing, other = _by_pid(servers, job["worker"])
    shown = _running(other, tokens["vera"], job_id)  # its progress, through the other process
    assert 0 < shown["progress"]["done"] < USERS and shown["progress"]["total"] == USERS

    cancelled = httpx.post(
        f"{other.url}/api/v1/jobs/{job_id}/cancel", headers=_auth(tokens["walt"])
    )
    assert cancelled.status_code == 202, cancelled.text
    job = _poll(doing, tokens["vera"], job_id, {"stopped", "finished"})

    assert job["state"] == "stopped", job
    assert "cancelled by walt" in job["stopped"]
    assert job["counts"]["not_attempted"] > 0
    sent = {r.user_id for r in puts(pcx)}
    assert len(sent) < USERS  # the rest were never sent
