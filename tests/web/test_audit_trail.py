"""The web service's real audit log: every step of a job on record, verifiable, no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient
from web_harness import ACCOUNTS, PASSWORD, bearer, csv_file, some_users, through_approval

from pcxbatch.credentials import Credentials
from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import passwords
from pcxbatch.web.flow import ServerConfig
from pcxbatch.web.server import add_account, build, default_sink
from pcxbatch.web.store import Store, database_url

PCXBATCH = Path(sys.executable).parent / "pcxbatch"


def test_a_job_through_the_api_is_on_record_and_verifies(
    tmp_path: Path, pcx: RunningSandbox
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = Store(database_url(data))
    tokens = {}
    for name, role in ACCOUNTS.items():
        add_account(store, name, role, PASSWORD)
        tokens[name] = passwords.new_token()
        store.add_token(passwords.token_hash(tokens[name]), name, "2026-01-01T00:00:00")
    config = ServerConfig(
        data, pcx.base_url, Credentials(api_key=pcx.api_key), job_settings={"rate": 1000}
    )
    service = build(config, default_sink(data), store)
    users = some_users(pcx, "active", 3)
    with TestClient(service.app, base_url="http://127.0.0.1") as client:
        job_id = through_approval(client, service, tokens, csv_file([[u, ""] for u in users]))
        got = client.post(f"/api/v1/jobs/{job_id}/approve", headers=bearer(tokens["vera"]))
        assert got.status_code == 202
        assert service.worker.wait_idle()
        client.get(f"/api/v1/jobs/{job_id}/files/results.xlsx", headers=bearer(tokens["ana"]))
    store.close()

    log = (data / "reports" / "audit.jsonl").read_text(encoding="utf-8")
    entries = [json.loads(line)["body"] for line in log.splitlines()]
    said = [(e["event"], e.get("actor", {}).get("account")) for e in entries]
    for step in [("upload", "ana"), ("validate", "ana"), ("preview", "ana"), ("submit", "ana"),
                 ("approve", "vera"), ("run.start", "vera"), ("run.finish", "vera"),
                 ("download", "ana")]:  # fmt: skip
        assert step in said, (step, said)
    assert pcx.api_key not in log and PASSWORD not in log
    assert not any(token in log for token in tokens.values())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
    verified = subprocess.run(
        [str(PCXBATCH), "audit", "verify", str(data / "reports")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_account_changes_from_the_command_line_are_on_record(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
    ran = subprocess.run(
        [str(PCXBATCH), "users", "add", "ana", "--role", "analyst", "--password-stdin",
         "--token", "--data-dir", str(tmp_path)],
        input="a long enough password\n", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    token = ran.stdout.splitlines()[-1]
    log = (tmp_path / "reports" / "audit.jsonl").read_text(encoding="utf-8")
    changes = [json.loads(line)["body"] for line in log.splitlines()]
    assert [e["details"]["change"] for e in changes if e["event"] == "account.change"] == [
        "add", "token",
    ]  # fmt: skip
    assert token not in log and "a long enough password" not in log
