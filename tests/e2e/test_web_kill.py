"""``pcxbatch serve`` killed with SIGKILL mid-run, restarted on the same data dir: the run
resumes from its journal, no row with a recorded outcome is sent again, the results agree with
the sandbox's final state. The server is a real process; the sandbox (slow, recording every
request) runs in the test, on loopback."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pcxbatch.web import passwords
from pcxbatch.web.server import add_account
from pcxbatch.web.store import Store, database_url

from .conftest import PCXBATCH, REPO
from .test_cron import puts
from .test_kill import recorded

USERS = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    """``pcxbatch serve`` as a process of its own."""

    def __init__(self, data: Path, pcx: Any, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.data, self.pcx, self.log, self.extra = data, pcx, log, extra
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
        env["PCX_API_KEY"] = self.pcx.api_key
        args = [str(PCXBATCH), "serve", "--data-dir", str(self.data), "--port", str(self.port),
                "--base-url", self.pcx.base_url, "--jobs-dir", str(self.data / "none"),
                *self.extra]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         env=env, cwd=REPO)  # fmt: skip

    def wait_ready(self, token: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/api/v1/jobs", headers=_auth(token)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    return accounts_with_tokens(database_url(data), {"ana": "analyst", "vera": "approver"})


def accounts_with_tokens(url: str, roles: dict[str, str]) -> dict[str, str]:
    """The accounts ``roles`` names, made in the service's database at ``url``; a token each."""
    store = Store(url)
    made = {}
    for name, role in roles.items():
        add_account(store, name, role, "correct horse battery")
        made[name] = passwords.new_token()
        store.add_token(passwords.token_hash(made[name]), name, "2026-01-01T00:00:00")
    store.close()
    return made


@pytest.fixture
def pcx(sandbox_factory: Any) -> Any:
    return sandbox_factory(users=200, seed=5, latency_ms=60)


@pytest.fixture
def server(tmp_path: Path, pcx: Any, tokens: dict[str, str]) -> Iterator[_Server]:
    running = _Server(tmp_path / "data", pcx, tmp_path / "serve.log")
    yield running
    running.stop()


def _poll(server: _Server, token: str, job_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        job: dict[str, Any] = httpx.get(f"{server.url}/api/v1/jobs/{job_id}",
                                        headers=_auth(token)).json()  # fmt: skip
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _approved_job(server: _Server, tokens: dict[str, str], users: list[str]) -> str:
    body = "User ID\n" + "".join(f"{u}\n" for u in users)
    created = httpx.post(f"{server.url}/api/v1/jobs", headers=_auth(tokens["ana"]),
                         files={"file": ("cases.csv", body.encode())},
                         data={"action": "deactivate", "reason": "Sanctions match"})  # fmt: skip
    assert created.status_code == 201, created.text
    job_id: str = created.json()["id"]
    url = f"{server.url}/api/v1/jobs/{job_id}"
    assert httpx.post(f"{url}/preview", headers=_auth(tokens["ana"])).status_code == 202
    _poll(server, tokens["ana"], job_id, {"previewed"})
    assert httpx.post(f"{url}/submit", headers=_auth(tokens["ana"])).status_code == 200
    assert httpx.post(f"{url}/approve", headers=_auth(tokens["vera"])).status_code == 202
    return job_id


def test_serve_killed_mid_run_resumes_and_sends_no_recorded_row_again(
    server: _Server, pcx: Any, tokens: dict[str, str]
) -> None:
    users = [u for u, user in pcx.sandbox.users.items() if user["status"] == "active"][:USERS]
    server.start()
    server.wait_ready(tokens["ana"])
    job_id = _approved_job(server, tokens, users)
    deadline = time.monotonic() + 30
    while len(puts(pcx)) < USERS // 4:  # a quarter sent: well inside the run
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.005)
    server.kill()
    done_before = recorded(server.data / "reports")
    sent_before = len(puts(pcx))
    assert 0 < len(done_before) < USERS

    server.start()  # same data dir: the run is queued again and resumes from its journal
    server.wait_ready(tokens["vera"])
    job = _poll(server, tokens["vera"], job_id, {"finished", "stopped"})

    finished_cleanly(server, pcx, tokens["vera"], job, users, done_before, sent_before)


def finished_cleanly(
    server: _Server, pcx: Any, token: str, job: dict[str, Any], users: list[str],
    done_before: set[str], sent_before: int,
) -> None:  # fmt: skip
    """The interrupted run finished: no row with an outcome recorded before the interruption
    (``done_before``) was sent again after it (the sandbox's requests from ``sent_before``), every
    user was sent, and the results agree with the sandbox's final state."""
    assert job["state"] == "finished", job
    again = [r.user_id for r in puts(pcx)[sent_before:]]
    assert not set(again) & done_before  # no row with a recorded outcome was sent again
    assert set(again) | done_before >= set(users)
    assert job["counts"]["applied"] + job["counts"]["unchanged"] == len(users)
    results = httpx.get(f"{server.url}/api/v1/jobs/{job['id']}/files/results.csv",
                        headers=_auth(token))  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(results.text.lstrip("\ufeff"))))
    assert sorted(r["user_id"] for r in rows) == sorted(users)
    for row in rows:  # what the report says is what PCX holds
        assert row["outcome"] in ("applied", "unchanged"), row
        assert pcx.sandbox.status_of(row["user_id"]) == "inactive", row
